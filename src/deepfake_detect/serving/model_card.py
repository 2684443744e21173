"""The fields of `GET /v1/model`, read from the model folder: config.json, the held-out
metrics file and the licence section of the model card, when the folder has them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from deepfake_detect.inference.detector import Detector

HELDOUT_FILE = "heldout_metrics.json"
CARD_FILE = "MODEL_CARD.md"
_SUMMARY_KEYS = ("n_images", "n_real", "n_fake", "accuracy", "balanced_accuracy", "roc_auc",
                 "average_precision", "eer", "tpr_at_1pct_fpr", "intervals")  # fmt: skip


def model_card(detector: Detector) -> dict[str, Any]:
    c = detector.config
    info = detector.info()
    return {
        "name": c.name, "version": c.version, "weights_sha256": c.weights_sha256,
        "backbone": c.backbone, "head": c.head, "image_size": c.image_size,
        "interpolation": c.interpolation, "mean": list(c.mean), "std": list(c.std),
        "threshold": c.threshold, "temperature": c.temperature,
        "class_names": list(c.class_names), "engine": info["engine"],
        "precision": info["precision"], "package_version": c.package_version,
        "training_data": [str(d) for d in c.training.get("data", [])],
        "licence": _licence(detector.model_dir),
        "validation_metrics": _summary(c.metrics),
        "heldout_metrics": _heldout(detector.model_dir),
    }  # fmt: skip


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a metrics dict (and per source), without the long tables."""
    out = {key: _finite(metrics[key]) for key in _SUMMARY_KEYS if key in metrics}
    per_source = metrics.get("per_source")
    if isinstance(per_source, dict):
        out["per_source"] = {name: _summary(m) for name, m in per_source.items()}
    return out


def _finite(value: Any) -> Any:
    """NaN (an AUC of one class) and infinities as None: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _heldout(folder: Path | None) -> dict[str, Any] | None:
    path = folder / HELDOUT_FILE if folder is not None else None
    if path is None or not path.is_file():
        return None
    try:
        return _summary(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def _licence(folder: Path | None) -> str | None:
    """The text under the card's '## Licence' heading, as one paragraph."""
    path = folder / CARD_FILE if folder is not None else None
    if path is None or not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip().lower() == "## licence")
    except StopIteration:
        return None
    body = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        body.append(line.strip())
    return " ".join(part for part in body if part) or None
