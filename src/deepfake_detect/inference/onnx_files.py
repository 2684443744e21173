"""Where a model's ONNX files live, what their metadata says, and when they are stale.

A model folder may hold `model.onnx` (fp32) and `model.int8.onnx` (int8, calibrated on real
images) beside `model.safetensors`. Each records in its metadata the sha256 of the weights it
was exported from: when the weights change, the file is stale and is exported again (fp32) or
refused (int8, whose calibration needs images). A folder that cannot be written to (the
installed package, a read-only share) gets its fp32 export in the user's cache instead.

Nothing here imports torch: exporting does (`inference.export`), only when a file is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

from deepfake_detect.errors import ModelError
from deepfake_detect.files import cache_root, sha256_file
from deepfake_detect.models.config import WEIGHTS_NAME, ModelConfig

PRECISIONS = ("fp32", "int8")
ONNX_NAMES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
CONFIG_KEY = "deepfake_detect.config"
PRECISION_KEY = "deepfake_detect.precision"
WEIGHTS_KEY = "deepfake_detect.weights_sha256"
CHECK_KEY = "deepfake_detect.check"
DEFAULT_KEY = "deepfake_detect.default_precision"
"""Set in an int8 file that met the clause for a default precision (ROC-AUC within 0.002 of
fp32 and at most 1% of labels changed on held-out images): `auto` then scores with it. Its value
is the JSON of those figures."""


def check_precision_name(name: str) -> str:
    if name not in ("auto", *PRECISIONS):
        raise ValueError(f"--precision must be auto, fp32 or int8, not {name!r}")
    return name


def onnx_metadata(config: ModelConfig, precision: str, weights_sha256: str, check: dict) -> dict:
    """The metadata an exported file carries: enough to score with it alone."""
    return {
        CONFIG_KEY: json.dumps(config.to_dict()),
        PRECISION_KEY: precision,
        WEIGHTS_KEY: weights_sha256,
        # where the file was written says nothing where it travels (a user's machine)
        CHECK_KEY: json.dumps({k: v for k, v in check.items() if k != "path"}),
    }


def config_from_metadata(path: Path, metadata: dict[str, str]) -> ModelConfig:
    """The model config embedded in an exported file (preprocessing, threshold, temperature)."""
    if CONFIG_KEY not in metadata:
        raise ModelError(
            f"{path}: an ONNX file without deepfake-detect metadata (export it with "
            "`deepfake-detect export`)"
        )
    try:
        data = json.loads(metadata[CONFIG_KEY])
    except ValueError as exc:
        raise ModelError(f"{path}: unreadable model config in the metadata ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: the metadata's model config must be a JSON object")
    return ModelConfig.from_dict(data)


def cache_dir() -> Path:
    """Where exports of models in folders that cannot be written to go."""
    return cache_root() / "onnx"


def candidate_paths(model_dir: Path, precision: str, weights_sha256: str) -> list[Path]:
    """Where an ONNX file of this folder may be: beside the weights, then in the cache."""
    cached = cache_dir() / f"{weights_sha256[:24]}.{ONNX_NAMES[precision]}"
    return [model_dir / ONNX_NAMES[precision], cached]


def weights_hash(model_dir: Path) -> str:
    path = model_dir / WEIGHTS_NAME
    if not path.is_file():
        raise ModelError(f"{model_dir}: no {WEIGHTS_NAME}")
    return sha256_file(path)
