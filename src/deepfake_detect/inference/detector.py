"""Scoring images with a trained detector: the Python API that the CLI and later services call.

>>> from deepfake_detect import load_detector
>>> detector = load_detector("runs/lite0")          # a run folder; None = the bundled model
>>> [p.to_dict() for p in detector.score(["face.jpg"])]
[{'path': 'face.jpg', 'score': 0.97, 'label': 'fake', 'error': None}]
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deepfake_detect.data.datasets import IMAGE_SUFFIXES, scan_folder
from deepfake_detect.data.images import load_image, preprocess
from deepfake_detect.errors import DetectorError, ModelError
from deepfake_detect.models.config import CONFIG_NAME, ModelConfig, check_threshold, read_config

ImageInput = str | os.PathLike | bytes | Image.Image


@dataclass(frozen=True)
class Prediction:
    """One scored input: score = P(fake) in [0, 1], or an error and no score."""

    path: str
    score: float | None
    label: str | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


BUNDLED_DIR = Path(__file__).parent.parent / "bundled"


def bundled_model_dir() -> Path | None:
    """The model shipped inside the package, when this build has one."""
    return BUNDLED_DIR if (BUNDLED_DIR / CONFIG_NAME).is_file() else None


def resolve_model(model: str | os.PathLike | None = None) -> Path:
    """The one place that turns --model (or its absence) into a model folder."""
    if model is None:
        bundled = bundled_model_dir()
        if bundled is None:
            raise ModelError("no bundled model in this build yet: pass --model RUN_DIR")
        return bundled
    path = Path(model)
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        return path
    if path.is_file() and path.name == CONFIG_NAME:
        return path.parent
    if not path.exists():
        raise ModelError(f"{path}: model not found")
    raise ModelError(f"{path}: not a model folder (expected {CONFIG_NAME} and model.safetensors)")


def describe_input(item: ImageInput, index: int) -> str:
    if isinstance(item, str | os.PathLike):
        return str(item)
    return f"<{type(item).__name__} {index}>"


class Detector:
    """A trained detector with its preprocessing and threshold, ready to score images."""

    def __init__(self, config: ModelConfig, net, device, model_dir: Path | None = None) -> None:
        self.config = config
        self.net = net
        self.device = device
        self.model_dir = model_dir

    @property
    def threshold(self) -> float:
        return self.config.threshold

    def info(self) -> dict[str, str]:
        c = self.config
        return {"model": c.name, "model_version": c.version, "weights_sha256": c.weights_sha256}

    def preprocess(self, item: ImageInput) -> np.ndarray:
        c = self.config
        return preprocess(load_image(item), c.image_size, c.mean, c.std, c.interpolation)

    def score_arrays(self, batch: np.ndarray) -> np.ndarray:
        """P(fake) for a batch of preprocessed images (N, 3, H, W)."""
        import torch

        from deepfake_detect.devices import autocast, to_device

        with torch.inference_mode(), autocast(self.device):
            logits = self.net(to_device(torch.from_numpy(batch), self.device)).float()
        # float64: a calibrated logit divided by T < 1 must not saturate float32 at 0 or 1
        scaled = logits.double() / self.config.temperature
        return torch.sigmoid(scaled).cpu().numpy().reshape(-1)

    def score(
        self,
        inputs: ImageInput | Iterable[ImageInput],
        *,
        batch_size: int = 32,
        threshold: float | None = None,
        workers: int = 2,
        progress: bool = False,
    ) -> list[Prediction]:
        """Score paths, bytes or PIL images; unreadable inputs get an error and no score.

        `progress` shows a bar (images/s, ETA) on stderr.
        """
        from tqdm.auto import tqdm

        total = len(inputs) if hasattr(inputs, "__len__") and not _is_single(inputs) else None
        scores = self.iter_scores(
            inputs, batch_size=batch_size, threshold=threshold, workers=workers
        )
        if not progress:
            return list(scores)
        return list(tqdm(scores, total=total, desc="scoring", unit="img", leave=False))

    def iter_scores(
        self, inputs, *, batch_size=32, threshold=None, workers=2
    ) -> Iterator[Prediction]:
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        threshold = self.threshold if threshold is None else check_threshold(threshold)
        if _is_single(inputs):
            inputs = [inputs]
        items = iter(inputs)  # consumed a batch at a time: inputs may be a long generator
        with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL decodes without the GIL
            start = 0
            while chunk := list(itertools.islice(items, batch_size)):
                loaded = list(pool.map(self._safe_preprocess, chunk))
                yield from self._score_chunk(chunk, loaded, start, threshold)
                start += len(chunk)

    def _safe_preprocess(self, item: ImageInput) -> np.ndarray | str:
        try:
            return self.preprocess(item)
        except DetectorError as exc:
            return str(exc)

    def _score_chunk(self, chunk, loaded, offset, threshold) -> Iterator[Prediction]:
        good = [i for i, x in enumerate(loaded) if isinstance(x, np.ndarray)]
        scores = self.score_arrays(np.stack([loaded[i] for i in good])) if good else []
        by_index = dict(zip(good, scores, strict=True))
        for i, item in enumerate(chunk):
            name = describe_input(item, offset + i)
            if i in by_index:
                score = float(by_index[i])
                yield Prediction(name, score, "fake" if score >= threshold else "real")
            else:
                yield Prediction(name, None, None, loaded[i])


def _is_single(inputs) -> bool:
    """One input rather than a collection of them (bytes and str are sequences too)."""
    return isinstance(inputs, str | os.PathLike | bytes | Image.Image)


def load_detector(model: str | os.PathLike | None = None, device: str = "auto") -> Detector:
    """Load a detector from a run folder (or the bundled model when model is None)."""

    from deepfake_detect.devices import resolve_device
    from deepfake_detect.models.checkpoint import load_model_weights
    from deepfake_detect.models.loading import model_from_config

    torch_device = resolve_device(device)
    model_dir = resolve_model(model)
    config = read_config(model_dir)
    net = model_from_config(config, load_model_weights(model_dir, config)).to(torch_device)
    return Detector(config, net, torch_device, model_dir)


def expand_paths(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, and the image files of folders (recursively, sorted)."""
    return scan_inputs(paths)[0]


def scan_inputs(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """Files as given, and the image files of folders (recursively, sorted; see
    `datasets.scan_folder`); then the files of those folders skipped as not images."""
    out: list[Path] = []
    skipped: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found, others = scan_folder(path)
            if not found:
                raise DetectorError(
                    f"{path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            out.extend(found)
            skipped.extend(others)
        else:
            out.append(path)  # a missing or unreadable file becomes an error row, not a stop
    return out, skipped
