"""Evaluate a detector on one split of a dataset: metrics.json, report, confusion matrix, ROC."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepfake_detect.checkpoint import atomic_write_bytes, atomic_write_json
from deepfake_detect.datasets import (
    ImageRecord,
    index_dataset,
    make_split,
    read_split_csv,
    select,
)
from deepfake_detect.errors import DataError
from deepfake_detect.metrics import classification_report_text, compute_metrics
from deepfake_detect.plots import plot_confusion_matrix, plot_roc

if TYPE_CHECKING:
    from deepfake_detect.inference import Detector

log = logging.getLogger("deepfake_detect")
SPLIT_NAME = "split.csv"


def evaluation_records(
    data: Sequence[str | os.PathLike], split: str, model_dir: Path | None, seed: int = 0
) -> list[ImageRecord]:
    """The images of one split, using the split that the model was trained with.

    The run folder's split.csv (written when training made the split) decides which images are
    test images; datasets with their own splits (the Kaggle CSVs) keep them; otherwise a seeded
    split is made exactly as `train` makes it.
    """
    records = index_dataset(data)
    recorded = model_dir / SPLIT_NAME if model_dir else None
    if recorded is not None and recorded.is_file() and any(r.split is None for r in records):
        by_path = {r.path.resolve(): r.split for r in read_split_csv(recorded)}
        known = [r for r in records if r.path.resolve() in by_path]
        if not known:
            raise DataError(f"{recorded}: the model's split does not describe these images")
        records = [_with_split(r, by_path[r.path.resolve()]) for r in known]
    elif any(r.split is None for r in records):
        log.warning("no recorded split for these images: making the default seeded split")
        records = make_split(records, seed=seed)
    chosen = select(records, split)
    if not chosen:
        raise DataError(f"no images in the {split} split")
    return chosen


def _with_split(record: ImageRecord, split: str | None) -> ImageRecord:
    from dataclasses import replace

    return replace(record, split=split)


def evaluate(
    detector: Detector,
    records: Sequence[ImageRecord],
    output_dir: str | os.PathLike,
    *,
    threshold: float | None = None,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Score every image of the split, then compute and write the metrics on all the scores."""
    threshold = detector.threshold if threshold is None else threshold
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be within [0, 1], got {threshold}")
    predictions = detector.score([r.path for r in records], batch_size=batch_size)
    failed = [p for p in predictions if p.score is None]
    if failed:
        log.warning("%d images could not be read and are left out; first: %s",
                    len(failed), failed[0].error)  # fmt: skip
    scored = [
        (r.label, p.score) for r, p in zip(records, predictions, strict=True) if p.score is not None
    ]
    if not scored:
        raise DataError("no image of the split could be read")
    labels = np.array([label for label, _ in scored])
    scores = np.array([score for _, score in scored])
    metrics = compute_metrics(labels, scores, threshold)
    metrics |= {**detector.info(), "failed": [p.error for p in failed]}
    write_report(Path(output_dir), metrics, labels, scores)
    return metrics


def write_report(output_dir: Path, metrics: dict, labels: np.ndarray, scores: np.ndarray) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    report = classification_report_text(labels, scores, metrics["threshold"])
    atomic_write_bytes(output_dir / "classification_report.txt", report.encode())
    plot_confusion_matrix(metrics["confusion_matrix"], output_dir / "confusion_matrix.png")
    plot_roc(labels, scores, output_dir / "roc.png")
    atomic_write_json(output_dir / "metrics.json", metrics)
