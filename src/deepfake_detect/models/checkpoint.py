"""Weights on disk: safetensors only (nothing here unpickles), checked against the sha256 that
config.json records. torch and safetensors are imported lazily."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake_detect.errors import ModelError
from deepfake_detect.files import atomic_write_bytes, atomic_write_json, sha256_file
from deepfake_detect.models.config import CONFIG_NAME, WEIGHTS_NAME, ModelConfig


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


def load_model_weights(model_dir: str | os.PathLike, config: ModelConfig) -> dict[str, Any]:
    """Load the weights and check them against the hash recorded in the config."""
    path = Path(model_dir) / WEIGHTS_NAME
    if not path.is_file():
        raise ModelError(f"{model_dir}: no {WEIGHTS_NAME}")
    if config.weights_sha256 and sha256_file(path) != config.weights_sha256:
        raise ModelError(f"{path}: sha256 does not match config.json (file changed or corrupt)")
    return load_tensors(path)
