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

import contextlib
import functools
import itertools
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deepfake_detect.data.images import (
    decode_image,
    decode_pixels,
    decoded_input,
    load_image,
    model_input,
    preprocess,
    read_source,
)
from deepfake_detect.data.provenance import read_provenance
from deepfake_detect.data.video import (
    DEFAULT_FRAMES,
    MAX_VIDEO_SECONDS,
    check_frame_count,
    is_video,
    read_frames,
)
from deepfake_detect.errors import DetectorError, ModelError
from deepfake_detect.inference.engines import Engine, TorchEngine
from deepfake_detect.inference.inputs import expand_paths, scan_inputs  # noqa: F401 (re-export)
from deepfake_detect.models.config import CONFIG_NAME, ModelConfig, check_threshold, read_config

ImageInput = str | os.PathLike | bytes | Image.Image
MAX_FACES = 32  # per image: a crowd photo is scored on its 32 leftmost faces


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
    # faces mode only: each face's box, score and label (the image's score is the highest);
    # warnings, such as no face found
    faces: list[dict[str, Any]] | None = None
    warnings: list[str] | None = None
    # videos only: each sampled frame's index, time, score and label (and faces); the video's
    # score is the mean of its frames', and max_score the highest
    frames: list[dict[str, Any]] | None = None
    max_score: float | None = None
    # faces="auto" with faces cropped: the whole image's own score, scored beside its faces
    # (the image's score is the highest of the three kinds)
    whole_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("faces", "warnings", "frames", "max_score", "whole_score"):
            if data[key] is None:
                del data[key]
        return data


FACE_MODES = ("off", "on", "auto")
NO_FACE = "no face found: the whole image was scored"


def check_faces_mode(faces: str) -> str:
    if faces not in FACE_MODES:
        raise ValueError(f"--faces must be one of {', '.join(FACE_MODES)}, not {faces!r}")
    return faces


@dataclass
class Inputs:
    """One input ready to score: one array per crop (the whole image: one), and what goes
    with its record; `prediction` turns the scores of `arrays`, in order, into its record."""

    arrays: list[np.ndarray]
    provenance: dict | None = None
    faces: list[Any] | None = None  # inference.faces.Face per face array, in faces mode
    warnings: list[str] | None = None
    frames: list[tuple[int, float, Inputs]] | None = None  # a video: (index, time, frame)
    whole: bool = False  # faces="auto": arrays[0] is the whole image, scored beside the faces

    def split_scores(self, scores: Iterator[float]) -> tuple[float | None, list[float]]:
        """This input's scores, taken from `scores`: the whole image's (auto with faces
        cropped; else None) and one per face (or the one whole image of the other modes)."""
        mine = [float(next(scores)) for _ in self.arrays]
        return (mine[0], mine[1:]) if self.whole else (None, mine)

    def prediction(self, name: str, scores: Iterator[float], threshold: float) -> Prediction:
        """The record of these inputs, taking one score per array from `scores`."""
        if self.frames is not None:
            return _video_prediction(name, self, scores, threshold)
        whole, mine = self.split_scores(scores)
        score = max(mine if whole is None else [whole, *mine])
        faces = _face_records(self.faces, mine, threshold)
        return Prediction(name, score, _label(score, threshold), None, self.provenance, faces,
                          self.warnings, whole_score=whole)  # fmt: skip


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
        self._face_detector = None

    @property
    def crop_policy(self):
        """How faces found in photos are cropped for this model (config.json's face_crop)."""
        from deepfake_detect.inference.faces import CropPolicy

        return CropPolicy.from_dict(self.config.face_crop)

    def face_detector(self):
        """The crop policy's face detector, loaded on first use."""
        if self._face_detector is None:
            from deepfake_detect.inference.faces import load_face_detector

            policy = self.crop_policy
            self._face_detector = load_face_detector(policy.detector, min_face=policy.min_face)
        return self._face_detector

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
        return model_input(item, c.image_size, c.mean, c.std, c.interpolation)

    def _load(self, item: ImageInput, provenance: bool, faces: str, frames: int) -> Inputs:
        """The model's input (one per face in faces mode), and the file's provenance when
        asked (from the same bytes). A video file: that for each of `frames` frames."""
        c = self.config
        found = None
        if isinstance(item, str | os.PathLike) and is_video(item):
            return self.video_inputs(item, faces, frames)
        if faces == "off" and not provenance:
            return Inputs([self.preprocess(item)])
        if faces == "auto" and not provenance and not isinstance(item, Image.Image):
            decoded = decode_pixels(*read_source(item))  # its size first: gated, as with off
            if not self.crop_policy.looks_for_faces(_pixel_size(decoded), c.image_size):
                return Inputs([decoded_input(decoded, c.image_size, c.mean, c.std,
                                             c.interpolation)])  # fmt: skip
            image = Image.fromarray(decoded) if isinstance(decoded, np.ndarray) else decoded
            return self.face_inputs(image, faces, None)
        if isinstance(item, Image.Image):
            image = load_image(item)
        else:
            name, data = read_source(item)
            image = decode_image(name, data)
            found = read_provenance(data).to_dict() if provenance else None
        if faces == "off":
            return Inputs([preprocess(image, c.image_size, c.mean, c.std, c.interpolation)],
                           found)  # fmt: skip
        return self.face_inputs(image, faces, found)

    def video_inputs(
        self,
        source,
        faces: str = "off",
        count: int = DEFAULT_FRAMES,
        *,
        name: str | None = None,
        max_seconds: float = MAX_VIDEO_SECONDS,
    ) -> Inputs:
        """A video file (a path, or its bytes) as the inputs of `count` evenly spaced frames."""
        c = self.config
        frames, _duration = read_frames(source, count, name=name, max_seconds=max_seconds)
        loaded = []
        for frame in frames:
            if faces == "off":
                image = preprocess(frame.image, c.image_size, c.mean, c.std, c.interpolation)
                one = Inputs([image])
            else:
                one = self.face_inputs(frame.image, faces, None)
            loaded.append((frame.index, round(frame.time, 3), one))
        arrays = [a for _, _, one in loaded for a in one.arrays]
        warnings = []
        missed = sum(bool(one.warnings) for _, _, one in loaded)
        if missed:
            warnings.append(f"no face found in {missed} of {len(loaded)} frames: "
                            "those were scored whole")  # fmt: skip
        return Inputs(arrays, None, None, warnings, loaded)

    def face_inputs(
        self, image: Image.Image, mode: str = "on", provenance: dict | None = None
    ) -> Inputs:
        """The crops of an image's faces (or the whole image: see `score`'s faces)."""
        from deepfake_detect.inference.faces import crop_face

        c, policy = self.config, self.crop_policy
        whole = preprocess(image, c.image_size, c.mean, c.std, c.interpolation)
        if mode == "auto" and not policy.looks_for_faces(image.size, c.image_size):
            return Inputs([whole], provenance)  # a face crop already: scored as with "off"
        faces = sorted(self.face_detector().detect(image), key=lambda f: (f.box[0], f.box[1]))
        faces = [replace(f, bounds=image.size) for f in faces[:MAX_FACES]]
        if not faces:
            return Inputs([whole], provenance, [], [NO_FACE])
        if mode == "auto" and max(f.side for f in faces) >= policy.auto_share * min(image.size):
            return Inputs([whole], provenance, [], [])  # the face fills the frame, as in training
        crops = [
            preprocess(crop_face(image, f, policy), c.image_size, c.mean, c.std, c.interpolation)
            for f in faces
        ]
        if mode == "auto":  # the rest of the picture is evidence too: scored beside the faces
            return Inputs([whole, *crops], provenance, faces, [], whole=True)
        return Inputs(crops, provenance, faces, [])

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
        faces: str = "off",
        frames: int = DEFAULT_FRAMES,
    ) -> list[Prediction]:
        """Score paths, bytes or PIL images; unreadable inputs get an error and no score.

        `progress` shows a bar (images/s, ETA) on stderr. For long runs, `iter_scores` yields
        each prediction as soon as its batch is scored, holding two batches at most.
        `provenance` adds what each file's metadata says about its origin (C2PA, generator
        traces); a PIL image has no file, so none. `faces` "on" finds the faces, crops each
        as the model's training images are framed (`crop_policy`) and scores each: the image's
        score is the highest; "auto" crops only faces that fill less of the image than
        `crop_policy.auto_share`, scores the whole image beside them (`whole_score`; the
        image's score is the highest of all), and looks for none in an image too small to hold
        such a face at the model's input size (`CropPolicy.looks_for_faces`: a 256 px face crop
        is scored whole, as with "off"); no face found scores the whole image, with a warning.
        A video file (mp4, mov, webm, mkv, avi, known by its bytes) is scored at `frames`
        evenly spaced frames: its score is their mean, with their highest as `max_score`.
        """
        from deepfake_detect.progress import progress_bar

        total = len(inputs) if hasattr(inputs, "__len__") and not _is_single(inputs) else None
        scores = self.iter_scores(
            inputs,
            batch_size=batch_size,
            threshold=threshold,
            workers=workers,
            provenance=provenance,
            faces=faces,
            frames=frames,
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
        self,
        inputs,
        *,
        batch_size=32,
        threshold=None,
        workers=None,
        provenance=False,
        faces="off",
        frames=DEFAULT_FRAMES,
    ) -> Iterator[Prediction]:
        """Predictions in input order, as each batch is scored. With `workers` >= 1, decoding
        the next batch in that many threads overlaps scoring this one; with 0, each batch is
        decoded on every CPU between the engine's calls, so that the two never contend. (Give
        workers >= 1 to a detector loaded with `spin=False`, or its spinning engine threads take
        CPU from the decoding ones; the CLI does.)"""
        check_batching(batch_size, workers)
        threshold = self.threshold if threshold is None else check_threshold(threshold)
        workers = default_workers() if workers is None else workers
        if _is_single(inputs):
            inputs = [inputs]
        items = iter(inputs)  # consumed a batch at a time: inputs may be a long generator
        chunks = iter(lambda: list(itertools.islice(items, batch_size)), [])
        check_faces_mode(faces)
        check_frame_count(frames)
        load = functools.partial(self._safe_load, provenance=provenance, faces=faces, frames=frames)
        if workers < 1:
            with _between_calls_loader(load) as load_chunk:
                start = 0
                for chunk in chunks:
                    loaded = load_chunk(chunk)
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
        self, item: ImageInput, provenance: bool, faces: str, frames: int
    ) -> Inputs | str:
        try:
            return self._load(item, provenance, faces, frames)
        except DetectorError as exc:
            return str(exc)

    def _score_chunk(self, chunk, loaded, offset, threshold) -> Iterator[Prediction]:
        arrays = [a for x in loaded if not isinstance(x, str) for a in x.arrays]
        scores = iter(self.score_arrays(np.stack(arrays)) if arrays else [])
        for i, item in enumerate(chunk):
            name, x = describe_input(item, offset + i), loaded[i]
            if isinstance(x, str):
                yield Prediction(name, None, None, x)
                continue
            yield x.prediction(name, scores, threshold)


def check_batching(batch_size: int, workers: int | None) -> None:
    """Refuse a batch size or decoding thread count that `iter_scores` cannot use (commands
    call it before they write anything)."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    if workers is not None and workers < 0:
        raise ValueError(f"--workers must be 0 or more, got {workers}")


def _label(score: float, threshold: float) -> str:
    return "fake" if score >= threshold else "real"


def _video_prediction(name: str, video: Inputs, scores: Iterator, threshold) -> Prediction:
    """A video's record: each frame scored by its highest face (or as a whole), the video by
    the mean of its frames."""
    records = []
    for index, time, frame in video.frames or []:
        whole, mine = frame.split_scores(scores)
        score = max(mine if whole is None else [whole, *mine])
        record = {"frame": index, "time": time, "score": score, "label": _label(score, threshold)}
        if frame.faces is not None:
            record["faces"] = _face_records(frame.faces, mine, threshold)
        if whole is not None:
            record["whole_score"] = whole
        records.append(record)
    frame_scores = [r["score"] for r in records]
    score = float(np.mean(frame_scores))
    return Prediction(name, score, _label(score, threshold), None, None, video.faces,
                      video.warnings, records, max(frame_scores))  # fmt: skip


def _face_records(faces, scores, threshold) -> list[dict] | None:
    """Each face's record; [] when the whole image was scored in faces mode."""
    if not faces:
        return faces
    return [
        {"face": k, "box": f.rounded(), "score": s, "label": "fake" if s >= threshold else "real",
         "confidence": round(f.confidence, 4)}
        for k, (f, s) in enumerate(zip(faces, scores, strict=True))
    ]  # fmt: skip


def _submit(pool, work, chunk):
    """Start decoding a chunk: (chunk, futures), or None after the last one."""
    return None if chunk is None else (chunk, [pool.submit(work, item) for item in chunk])


@contextlib.contextmanager
def _between_calls_loader(load):
    """A function that loads a batch while the engine waits for it: on one thread per CPU, or
    in this thread on one CPU. PIL and libjpeg-turbo decode and resize without the GIL."""
    from deepfake_detect.inference.engines import cpu_count, run_on_threads

    threads = cpu_count()
    if threads < 2:
        yield lambda chunk: [load(x) for x in chunk]
        return
    with ThreadPoolExecutor(threads - 1) as pool:  # this thread loads too
        yield functools.partial(run_on_threads, pool, threads, load)


def default_workers() -> int:
    """Decoding threads beside the engine's. On two CPUs, none: each batch is decoded on both
    CPUs between the engine's calls, and the engine's two threads then have the CPUs to
    themselves (the issue's rule: never more busy threads than CPUs). Measured on two CPUs
    (`deepfake-detect benchmark`, images/s with 0 / 1 / 2 threads decoding beside scoring):
    71 / 70 / 72, 68 / 66 / 65 and 78 / 77 / 72 on an Intel Xeon, the batch then decoded in
    the scoring thread; on an AMD EPYC, in one run, 133-135 decoded in the scoring thread,
    137-142 on both CPUs between calls, 135-149 with one thread beside; on the Intel Xeon of
    2026-12-05, with the loading of `engines.run_on_threads` and `images.model_input`, 160 between
    calls, 167 with one thread beside and 166 with two (three and four busy threads on two
    CPUs, which the rule forbids). With more CPUs one thread decodes the next batch while this
    one is scored (not measured: no such machine)."""
    from deepfake_detect.inference.engines import decodes_between_calls

    return 0 if decodes_between_calls() else 1


def _pixel_size(decoded: Image.Image | np.ndarray) -> tuple[int, int]:
    """(width, height) of what `decode_pixels` returned."""
    if isinstance(decoded, np.ndarray):
        return decoded.shape[1], decoded.shape[0]
    return decoded.size


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
    spin: bool | None = None,
    lanes: int | None = None,
) -> Detector:
    """Load a detector from a run folder, an exported .onnx file, or the bundled model (None).

    engine onnx (the default) scores on the CPU with ONNX Runtime, without importing torch; a
    run folder is exported to ONNX once, beside its weights. precision auto is fp32, or the
    folder's int8 file when torch is missing to export fp32 (the bundled model ships one).
    engine torch runs PyTorch, on a GPU when device allows. ONNX Runtime's `threads` (default:
    the CPUs this process may use) score `lanes` images at once, one call each (default: one
    per thread; 1 puts every thread on each call, `OnnxEngine`). spin lets the threads of a
    lane spin during a call: by default where batches are decoded between calls; pass False
    when other threads decode beside scoring (`iter_scores(workers=N)`, a server).
    """
    from deepfake_detect.devices import check_device_name
    from deepfake_detect.inference.engines import OnnxEngine, check_engine_name
    from deepfake_detect.inference.onnx_cache import onnx_engine_for_folder
    from deepfake_detect.inference.onnx_files import check_precision_name, config_from_metadata

    check_device_name(device)
    check_engine_name(engine)
    check_precision_name(precision)
    check_engine_choice(model, engine, precision)
    path = Path(model) if model is not None else None
    if path is not None and path.suffix.lower() == ".onnx":
        _check_onnx_device(device)
        if not path.is_file():
            raise ModelError(f"{path}: model not found")
        onnx_engine = OnnxEngine(path, threads=threads, spin=spin, lanes=lanes)
        config = config_from_metadata(path, onnx_engine.metadata)
        folder = path.parent if (path.parent / CONFIG_NAME).is_file() else None
        return Detector(config, onnx_engine, folder)
    model_dir = resolve_model(model)
    config = read_config(model_dir)
    if engine == "onnx":
        _check_onnx_device(device)
        onnx_engine = onnx_engine_for_folder(
            model_dir, precision, threads=threads, spin=spin, lanes=lanes
        )
        return Detector(config, onnx_engine, model_dir)
    return Detector(config, _torch_engine(model_dir, config, device), model_dir)


def check_engine_choice(model: str | os.PathLike | None, engine: str, precision: str) -> None:
    """Refuse an engine the model cannot score with, before anything loads: an ONNX file
    runs on ONNX Runtime only, and int8 exists only there."""
    if model is not None and Path(model).suffix.lower() == ".onnx" and engine != "onnx":
        raise ValueError(f"{model}: an ONNX file scores with --engine onnx only")
    if engine != "onnx" and precision == "int8":
        raise ValueError("--precision int8 needs --engine onnx")


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
