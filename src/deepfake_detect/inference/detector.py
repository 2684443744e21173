"""Scoring images with a trained detector: the Python API that the CLI and later services call.

>>> from deepfake_detect import load_detector
>>> detector = load_detector("runs/lite0")          # a run folder, a .onnx file; None = bundled
>>> [p.to_dict() for p in detector.score(["face.jpg"])]
[{'path': 'face.jpg', 'score': 0.97, 'label': 'fake', 'error': None, 'provenance': None}]
>>> detector.score(["face.png"], provenance=True)[0].provenance["summary"]  # what the file claims
'metadata: ComfyUI (png:prompt, png:workflow)'
>>> load_detector(engine="torch")                  # PyTorch instead of ONNX Runtime
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deepfake_detect.data.images import decode_image, load_image, preprocess, read_source
from deepfake_detect.data.provenance import read_provenance
from deepfake_detect.errors import DetectorError, ModelError
from deepfake_detect.inference.engines import Engine, TorchEngine
from deepfake_detect.inference.inputs import expand_paths, scan_inputs  # noqa: F401 (re-export)
from deepfake_detect.models.config import CONFIG_NAME, ModelConfig, check_threshold, read_config

ImageInput = str | os.PathLike | bytes | Image.Image


@dataclass(frozen=True)
class Prediction:
    """One scored input: score = P(fake) in [0, 1], or an error and no score. `provenance`
    (asked for with provenance=True) is what the file's metadata claims about its origin
    (`data.provenance.Provenance.to_dict`), beside the score and never mixed into it."""

    path: str
    score: float | None
    label: str | None
    error: str | None = None
    provenance: dict[str, Any] | None = None

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
    """A trained detector with its preprocessing and threshold, ready to score images.

    The engine (`inference.engines`) turns preprocessed batches into logits; the detector
    applies the temperature and the threshold, the same way for every engine.
    """

    def __init__(self, config: ModelConfig, engine: Engine, model_dir: Path | None = None):
        self.config = config
        self.engine = engine
        self.model_dir = model_dir

    @property
    def net(self):
        """The PyTorch network (torch engine only)."""
        if not isinstance(self.engine, TorchEngine):
            raise AttributeError("the onnx engine has no PyTorch network: load with engine='torch'")
        return self.engine.net

    @property
    def device(self):
        return self.engine.device if isinstance(self.engine, TorchEngine) else "cpu"

    @property
    def threshold(self) -> float:
        return self.config.threshold

    def info(self) -> dict[str, str]:
        c = self.config
        return {
            "model": c.name, "model_version": c.version, "weights_sha256": c.weights_sha256,
            "engine": self.engine.name, "precision": self.engine.precision,
        }  # fmt: skip

    def preprocess(self, item: ImageInput) -> np.ndarray:
        c = self.config
        return preprocess(load_image(item), c.image_size, c.mean, c.std, c.interpolation)

    def _load(self, item: ImageInput, provenance: bool) -> tuple[np.ndarray, dict | None]:
        """The model's input, and the file's provenance when asked (from the same bytes)."""
        if not provenance or isinstance(item, Image.Image):
            return self.preprocess(item), None
        c = self.config
        name, data = read_source(item)
        image = decode_image(name, data)
        array = preprocess(image, c.image_size, c.mean, c.std, c.interpolation)
        return array, read_provenance(data).to_dict()

    def score_arrays(self, batch: np.ndarray) -> np.ndarray:
        """P(fake) for a batch of preprocessed images (N, 3, H, W)."""
        # float64: a calibrated logit divided by T < 1 must not saturate float32 at 0 or 1
        scaled = self.engine.logits(batch) / self.config.temperature
        return 1.0 / (1.0 + np.exp(-scaled))

    def score(
        self,
        inputs: ImageInput | Iterable[ImageInput],
        *,
        batch_size: int = 32,
        threshold: float | None = None,
        workers: int | None = None,
        progress: bool = False,
        provenance: bool = False,
    ) -> list[Prediction]:
        """Score paths, bytes or PIL images; unreadable inputs get an error and no score.

        `progress` shows a bar (images/s, ETA) on stderr. For long runs, `iter_scores` yields
        each prediction as soon as its batch is scored, holding two batches at most.
        `provenance` adds what each file's metadata says about its origin (C2PA, generator
        traces); a PIL image has no file, so none.
        """
        from deepfake_detect.progress import progress_bar

        total = len(inputs) if hasattr(inputs, "__len__") and not _is_single(inputs) else None
        scores = self.iter_scores(
            inputs,
            batch_size=batch_size,
            threshold=threshold,
            workers=workers,
            provenance=provenance,
        )
        if not progress:
            return list(scores)
        out = []
        with progress_bar(total, "scoring", True) as bar:
            for prediction in scores:
                out.append(prediction)
                bar.update(1)
        return out

    def iter_scores(
        self, inputs, *, batch_size=32, threshold=None, workers=None, provenance=False
    ) -> Iterator[Prediction]:
        """Predictions in input order, as each batch is scored. Decoding the next batch (in
        `workers` threads; 0 decodes in this thread) overlaps scoring this one."""
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        if workers is not None and workers < 0:
            raise ValueError(f"--workers must be 0 or more, got {workers}")
        threshold = self.threshold if threshold is None else check_threshold(threshold)
        workers = default_workers() if workers is None else workers
        if _is_single(inputs):
            inputs = [inputs]
        items = iter(inputs)  # consumed a batch at a time: inputs may be a long generator
        chunks = iter(lambda: list(itertools.islice(items, batch_size)), [])
        load = functools.partial(self._safe_load, provenance=provenance)
        if workers < 1:
            start = 0
            for chunk in chunks:
                loaded = [load(item) for item in chunk]
                yield from self._score_chunk(chunk, loaded, start, threshold)
                start += len(chunk)
            return
        with ThreadPoolExecutor(workers) as pool:  # PIL decodes and resizes without the GIL
            start = 0
            ahead = _submit(pool, load, next(chunks, None))
            while ahead is not None:
                chunk, futures = ahead
                loaded = [future.result() for future in futures]
                ahead = _submit(pool, load, next(chunks, None))
                yield from self._score_chunk(chunk, loaded, start, threshold)
                start += len(chunk)

    def _safe_load(
        self, item: ImageInput, provenance: bool
    ) -> tuple[np.ndarray, dict | None] | str:
        try:
            return self._load(item, provenance)
        except DetectorError as exc:
            return str(exc)

    def _score_chunk(self, chunk, loaded, offset, threshold) -> Iterator[Prediction]:
        good = [i for i, x in enumerate(loaded) if not isinstance(x, str)]
        scores = self.score_arrays(np.stack([loaded[i][0] for i in good])) if good else []
        by_index = dict(zip(good, scores, strict=True))
        for i, item in enumerate(chunk):
            name = describe_input(item, offset + i)
            if i in by_index:
                score = float(by_index[i])
                label = "fake" if score >= threshold else "real"
                yield Prediction(name, score, label, provenance=loaded[i][1])
            else:
                yield Prediction(name, None, None, loaded[i])


def _submit(pool, work, chunk):
    """Start decoding a chunk: (chunk, futures), or None after the last one."""
    return None if chunk is None else (chunk, [pool.submit(work, item) for item in chunk])


def default_workers() -> int:
    """Decoding threads beside the engine's. On two CPUs, none: ONNX Runtime keeps both busy,
    and `deepfake-detect benchmark` measured the pipeline at 71 / 70 / 72 and 68 / 66 / 65
    images/s with 0 / 1 / 2 decoding threads in two runs. With more CPUs one thread decodes the
    next batch while this one is scored (not measured here: no such machine)."""
    from deepfake_detect.inference.engines import cpu_count

    return 0 if cpu_count() <= 2 else 1


def _is_single(inputs) -> bool:
    """One input rather than a collection of them (bytes and str are sequences too)."""
    return isinstance(inputs, str | os.PathLike | bytes | Image.Image)


def load_detector(
    model: str | os.PathLike | None = None,
    device: str = "auto",
    *,
    engine: str = "onnx",
    precision: str = "auto",
    threads: int | None = None,
) -> Detector:
    """Load a detector from a run folder, an exported .onnx file, or the bundled model (None).

    engine onnx (the default) scores on the CPU with ONNX Runtime, without importing torch; a
    run folder is exported to ONNX once, beside its weights. precision auto is fp32, or the
    folder's int8 file when torch is missing to export fp32 (the bundled model ships one).
    engine torch runs PyTorch, on a GPU when device allows.
    """
    from deepfake_detect.devices import check_device_name
    from deepfake_detect.inference.engines import OnnxEngine, check_engine_name
    from deepfake_detect.inference.onnx_cache import onnx_engine_for_folder
    from deepfake_detect.inference.onnx_files import check_precision_name, config_from_metadata

    check_device_name(device)
    check_engine_name(engine)
    check_precision_name(precision)
    path = Path(model) if model is not None else None
    if path is not None and path.suffix.lower() == ".onnx":
        if engine != "onnx":
            raise ValueError(f"{path}: an ONNX file scores with --engine onnx only")
        _check_onnx_device(device)
        if not path.is_file():
            raise ModelError(f"{path}: model not found")
        onnx_engine = OnnxEngine(path, threads=threads)
        config = config_from_metadata(path, onnx_engine.metadata)
        folder = path.parent if (path.parent / CONFIG_NAME).is_file() else None
        return Detector(config, onnx_engine, folder)
    model_dir = resolve_model(model)
    config = read_config(model_dir)
    if engine == "onnx":
        _check_onnx_device(device)
        onnx_engine = onnx_engine_for_folder(model_dir, precision, threads)
        return Detector(config, onnx_engine, model_dir)
    if precision == "int8":
        raise ValueError("--precision int8 needs --engine onnx")
    return Detector(config, _torch_engine(model_dir, config, device), model_dir)


def _check_onnx_device(device: str) -> None:
    if device not in ("auto", "cpu"):
        raise ValueError(f"--device {device}: the onnx engine runs on the CPU; use --engine torch")


def _torch_engine(model_dir: Path, config: ModelConfig, device: str) -> TorchEngine:
    from deepfake_detect.devices import resolve_device
    from deepfake_detect.models.checkpoint import load_model_weights
    from deepfake_detect.models.loading import model_from_config

    torch_device = resolve_device(device)
    net = model_from_config(config, load_model_weights(model_dir, config)).to(torch_device)
    return TorchEngine(net, torch_device)
