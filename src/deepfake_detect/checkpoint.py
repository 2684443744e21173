"""A model that describes itself: weights in safetensors, everything else in config.json.

Nothing here unpickles: weights are safetensors, metadata is JSON. torch is imported lazily so that
the configuration can be read by engines that never load PyTorch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfake_detect import __version__
from deepfake_detect.errors import ModelError

FORMAT_VERSION = 1  # one network
ENSEMBLE_FORMAT_VERSION = 2  # several networks (members): readers of version 1 refuse it clearly
FORMAT_VERSIONS = (FORMAT_VERSION, ENSEMBLE_FORMAT_VERSION)
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")


def check_threshold(value: float) -> float:
    """A user-given decision threshold: a probability in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"threshold must be within [0, 1], got {value}")
    return float(value)


MAX_INPUT_SIZE = 4096
"""Largest input side a config may ask for (resizing every image to it must stay affordable)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a detector and preprocess its input like in training."""

    backbone: str
    head: str = "paper"
    stem_stride: int | None = None  # None: the backbone's own
    image_size: int = 299
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "bicubic"
    threshold: float = 0.5
    temperature: float = 1.0
    class_names: tuple[str, str] = ("real", "fake")
    name: str = "deepfake-detect"
    version: str = "0"
    weights_sha256: str = ""
    package_version: str = __version__
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    members: list[dict[str, Any]] = field(default_factory=list)  # an ensemble's networks
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self._check_types()
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        self.class_names = tuple(self.class_names)
        if self.format_version not in FORMAT_VERSIONS:
            raise ModelError(
                f"model format version {self.format_version} is not supported "
                f"(this is deepfake-detect {__version__}, which reads versions "
                f"{', '.join(map(str, FORMAT_VERSIONS))})"
            )
        if bool(self.members) != (self.format_version == ENSEMBLE_FORMAT_VERSION):
            raise ModelError(
                f"format version {ENSEMBLE_FORMAT_VERSION} is for ensembles (members), "
                f"version {FORMAT_VERSION} for one network"
            )
        if self.stem_stride is not None and self.stem_stride not in (1, 2):
            raise ModelError(f"stem_stride must be 1 or 2, got {self.stem_stride}")
        if not 8 <= self.image_size <= MAX_INPUT_SIZE:
            raise ModelError(
                f"image_size must be within [8, {MAX_INPUT_SIZE}], got {self.image_size}"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ModelError("mean and std must hold three values, std all positive")
        if self.interpolation not in INTERPOLATIONS:
            raise ModelError(f"unknown interpolation {self.interpolation!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ModelError(f"threshold must be within [0, 1], got {self.threshold}")
        if self.temperature <= 0:
            raise ModelError(f"temperature must be positive, got {self.temperature}")
        if self.class_names != ("real", "fake"):
            raise ModelError(f"class names must be ('real', 'fake'), got {self.class_names}")
        if self.members and (
            len(self.members) < 2
            or not all(isinstance(m, dict) and isinstance(m.get("backbone"), str)
                       for m in self.members)
        ):  # fmt: skip
            raise ModelError("members must list two or more networks, each naming its backbone")

    def _check_types(self) -> None:
        """A value of the wrong JSON type is named as such, not met later as a crash."""
        integers = {"format_version": self.format_version, "image_size": self.image_size}
        if self.stem_stride is not None:
            integers["stem_stride"] = self.stem_stride
        numbers = {"threshold": self.threshold, "temperature": self.temperature}
        texts = {"backbone": self.backbone, "head": self.head, "interpolation": self.interpolation}
        for name, value in integers.items():
            if not isinstance(value, int) or isinstance(value, bool):
                raise ModelError(f"{name} must be an integer, got {value!r}")
        for name, value in numbers.items():
            if not _is_number(value):
                raise ModelError(f"{name} must be a number, got {value!r}")
        for name, value in texts.items():
            if not isinstance(value, str):
                raise ModelError(f"{name} must be a string, got {value!r}")
        for name in ("mean", "std", "class_names"):
            if not isinstance(getattr(self, name), (list, tuple)):
                raise ModelError(f"{name} must be a list, got {getattr(self, name)!r}")
        if not all(_is_number(v) for v in (*self.mean, *self.std)):
            raise ModelError("mean and std must hold numbers")
        for name in ("training", "metrics"):
            if not isinstance(getattr(self, name), dict):
                raise ModelError(f"{name} must be a JSON object")
        if not isinstance(self.members, list):
            raise ModelError("members must be a list")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if not self.members:  # a one-network config stays readable by earlier releases
            del data["members"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        if "format_version" not in data:
            raise ModelError("config has no format_version: not a deepfake-detect model config")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown and data["format_version"] in FORMAT_VERSIONS:
            raise ModelError(f"config has unknown fields: {', '.join(unknown)}")
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ModelError(f"config is incomplete: {exc}") from None


def check_output_path(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Refuse, before any work is done, an output that could not be written: a file where a
    folder must go (or a folder where a file must), a file standing where a parent folder
    would have to be created, or a folder where no file can be created (read-only, full, not
    ours). A ValueError naming the option and the path.

    Whether a file can be created is found out by creating one, a hidden temporary file
    beside the output, and removing it: permissions alone do not tell (root, ACLs, read-only
    mounts)."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise ValueError(f"--output {path}: exists and is not a folder")
    if not folder and path.is_dir():
        raise ValueError(f"--output {path}: is a folder; give a file name")
    candidates = [path] if folder else []
    for parent in [*candidates, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"--output {path}: {parent} is a file, not a folder")
            _check_writable(path, parent)
            return


def _check_writable(path: Path, folder: Path) -> None:
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".deepfake-detect-probe-")
    except OSError as exc:
        raise ValueError(
            f"--output {path}: cannot write in {folder} ({exc.strerror or exc})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write through a temporary file and rename, so a killed process leaves no partial file.

    An OSError names `path`, never the temporary file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes files only their owner can read
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode())


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, Any]) -> None:
    """Atomically save a flat dict of tensors as safetensors."""
    from safetensors.torch import save

    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, save(contiguous))


def load_tensors(path: str | os.PathLike) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"{path}: cannot read safetensors weights ({exc})") from None


def save_model(model_dir: str | os.PathLike, state_dict: Mapping[str, Any], config: ModelConfig):
    """Write model.safetensors then config.json (with the weights' sha256) into model_dir."""
    model_dir = Path(model_dir)
    save_tensors(model_dir / WEIGHTS_NAME, state_dict)
    config.weights_sha256 = sha256_file(model_dir / WEIGHTS_NAME)
    atomic_write_json(model_dir / CONFIG_NAME, config.to_dict())
    return config


def read_config(model_dir: str | os.PathLike) -> ModelConfig:
    path = Path(model_dir) / CONFIG_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{model_dir}: no {CONFIG_NAME}, not a model folder") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable config ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: config must be a JSON object")
    return ModelConfig.from_dict(data)


def load_model_weights(model_dir: str | os.PathLike, config: ModelConfig) -> dict[str, Any]:
    """Load the weights and check them against the hash recorded in the config."""
    path = Path(model_dir) / WEIGHTS_NAME
    if not path.is_file():
        raise ModelError(f"{model_dir}: no {WEIGHTS_NAME}")
    if config.weights_sha256 and sha256_file(path) != config.weights_sha256:
        raise ModelError(f"{path}: sha256 does not match config.json (file changed or corrupt)")
    return load_tensors(path)
