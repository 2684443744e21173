"""A model that describes itself: weights in safetensors, everything else in config.json.

Nothing here unpickles: weights are safetensors, metadata is JSON. torch is imported lazily so that
the configuration can be read by engines that never load PyTorch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfake_detect.errors import ModelError
from deepfake_detect.version import __version__

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
    # how --faces crops a face found in a photo to fill the input as in training (the fields of
    # inference.faces.CropPolicy); empty: the package's measured default
    face_crop: dict[str, Any] = field(default_factory=dict)
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
        for name in ("training", "metrics", "face_crop"):
            if not isinstance(getattr(self, name), dict):
                raise ModelError(f"{name} must be a JSON object")
        if not isinstance(self.members, list):
            raise ModelError("members must be a list")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if not self.members:  # a one-network config stays readable by earlier releases
            del data["members"]
        if not self.face_crop:
            del data["face_crop"]
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
