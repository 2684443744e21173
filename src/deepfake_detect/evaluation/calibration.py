"""Re-fitting a model's threshold and temperature on a user's own labelled images.

A model chooses both on its own validation split; a user whose images differ (another camera,
another generator, another share of fakes) may want them chosen on theirs: `recalibrate`
scores those images with the model as it is, fits the temperature that calibrates them, then
picks the threshold by the model's rule (`select_threshold`: by default where a class-balanced
recalibration of the scores says 1/2), or the one that keeps the false-positive rate
(real photos called fake) at or under a target. The result is a new model folder: the same
weights, the new numbers, and a record of where they came from. Every engine applies them (the
ONNX file is exported from that folder with them in its metadata).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_detect.data.datasets import ImageRecord
from deepfake_detect.errors import DataError, DetectorError, ModelError
from deepfake_detect.evaluation.metrics import (
    THRESHOLD_RULES,
    compute_metrics,
    expected_calibration_error,
    fit_temperature,
    select_threshold,
)
from deepfake_detect.inference.detector import Detector
from deepfake_detect.models.config import CONFIG_NAME, WEIGHTS_NAME

log = logging.getLogger("deepfake_detect")


def threshold_for_fpr(labels, scores, target_fpr: float) -> float:
    """The lowest threshold at which at most `target_fpr` of the real images (label 0) score at
    or above it: as many fakes caught as that false-positive rate allows."""
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"--target-fpr must be within [0, 1), got {target_fpr}")
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    real = np.sort(s[y == 0])
    if real.size == 0:
        raise DataError("--target-fpr needs real images (label 0) to count false positives")
    unique = np.unique(s)
    candidates = np.append(unique, np.nextafter(unique[-1], np.inf))
    # real images at or above each candidate: those called fake
    alarms = real.size - np.searchsorted(real, candidates, side="left")
    allowed = np.flatnonzero(alarms <= target_fpr * real.size + 1e-9)
    return float(candidates[allowed[0]])


def raw_logits(detector: Detector, records: Sequence[ImageRecord], batch_size: int = 32):
    """The network's logits (before the stored temperature) and the labels, for the records
    that could be read; the others are left out with a warning."""
    logits, labels, failed = [], [], []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        arrays, kept = [], []
        for record in chunk:
            try:
                arrays.append(detector.preprocess(record.path))
                kept.append(record.label)
            except DetectorError as exc:
                failed.append(str(exc))
        if arrays:
            logits.append(detector.engine.logits(np.stack(arrays)))
            labels += kept
    if failed:
        log.warning("%d image(s) could not be read and are left out; first: %s",
                    len(failed), failed[0])  # fmt: skip
    if not labels:
        raise DataError("no image could be read")
    return np.concatenate(logits).astype(np.float64), np.array(labels), failed


def recalibrate(
    detector: Detector,
    records: Sequence[ImageRecord],
    output_dir: str | os.PathLike,
    *,
    target_fpr: float | None = None,
    threshold_rule: str = THRESHOLD_RULES[0],
    data_names: Sequence[str] = (),
    batch_size: int = 32,
) -> dict[str, Any]:
    """Fit the temperature and the threshold on `records` and write a new model folder at
    `output_dir` with them. Returns what was fitted, with the metrics before and after."""
    if detector.model_dir is None:
        raise ModelError("calibrate needs a model folder (an .onnx file has no weights to copy)")
    if target_fpr is not None and not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"--target-fpr must be within [0, 1), got {target_fpr}")
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise ValueError(f"--output {output_dir}: the folder exists and is not empty")
    if output_dir.resolve() == Path(detector.model_dir).resolve():
        raise ValueError("--output must be a new folder, not the model's own")
    if detector.engine.precision == "int8":
        log.warning(
            "fitting on int8 scores: the new folder carries no int8 file and scores in fp32 "
            "where torch is installed, whose scores these numbers do not fit"
        )
    logits, labels, failed = raw_logits(detector, records, batch_size)
    if len(set(labels.tolist())) < 2 and target_fpr is None:
        raise DataError("calibrating needs real and fake images (or --target-fpr, reals only)")
    old = detector.config
    before = 1.0 / (1.0 + np.exp(-logits / old.temperature))
    temperature = fit_temperature(labels, logits) if len(set(labels.tolist())) == 2 else 1.0
    scores = 1.0 / (1.0 + np.exp(-logits / temperature))
    if target_fpr is None:
        threshold = select_threshold(labels, scores, threshold_rule)
    else:
        threshold = threshold_for_fpr(labels, scores, target_fpr)
    metrics = compute_metrics(labels, scores, threshold, n_bootstrap=200)
    record = {
        "from_model": {"name": old.name, "version": old.version,
                       "threshold": old.threshold, "temperature": old.temperature},
        "data": list(data_names), "images": int(labels.size), "failed": len(failed),
        "rule": threshold_rule if target_fpr is None else
                f"false-positive rate at most {target_fpr}",
        "target_fpr": target_fpr, "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "precision": detector.engine.precision,  # the scores fitted: int8's differ from fp32's
        "ece_before": expected_calibration_error(labels, before),
        "ece_after": expected_calibration_error(labels, scores),
    }  # fmt: skip
    config = type(old).from_dict(old.to_dict())
    config.threshold, config.temperature = threshold, temperature
    config.metrics = {**old.metrics, "recalibration": {**record, "metrics": metrics}}
    write_model_folder(Path(detector.model_dir), output_dir, config)
    return {"threshold": threshold, "temperature": temperature, **record, "metrics": metrics}


def write_model_folder(source: Path, output_dir: Path, config) -> None:
    """A model folder of `source`'s weights with `config` (new numbers for the same network):
    the weights copied, then config.json: a folder without config.json is no model, so an
    interrupted run leaves nothing that loads."""
    from deepfake_detect.files import atomic_write_json

    output_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / WEIGHTS_NAME, output_dir / WEIGHTS_NAME)
    atomic_write_json(output_dir / CONFIG_NAME, config.to_dict())
