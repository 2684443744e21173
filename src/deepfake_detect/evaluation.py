"""Evaluate a detector on one split of a dataset: metrics.json, report, confusion matrix, ROC."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from deepfake_detect.checkpoint import (
    atomic_write_bytes,
    atomic_write_json,
    check_output_path,
    check_threshold,
)
from deepfake_detect.datasets import (
    SPLIT_NAME,
    ImageRecord,
    index_dataset,
    index_labelled_folder,
    make_split,
    read_split_csv,
    select,
)
from deepfake_detect.errors import DataError, ImageError
from deepfake_detect.images import load_image
from deepfake_detect.manifest import MANIFEST_NAME, file_sha256, read_manifest
from deepfake_detect.metrics import classification_report_text, compute_metrics
from deepfake_detect.plots import plot_confusion_matrix, plot_reliability, plot_roc

if TYPE_CHECKING:
    from deepfake_detect.inference import Detector

log = logging.getLogger("deepfake_detect")


def evaluation_records(
    data: Sequence[str | os.PathLike],
    split: str,
    model_dir: Path | None,
    seed: int = 0,
    label: int | None = None,
) -> list[ImageRecord]:
    """The images of one split ("all" for every image), as the model was trained.

    A run folder's split.csv (written when training made the split) or a shipped model's split
    manifest decides which images are test images, and images they do not know (never trained
    on) count as test; datasets with their own splits (the Kaggle CSVs) keep them; otherwise a
    seeded split is made as `train` makes it. With `label`, each folder is one class only
    (`datasets.index_labelled_folder`): a folder of real photos measures false alarms.
    """
    if label is None:
        records = index_dataset(data)
    else:
        records = [r for root in data for r in index_labelled_folder(root, label)]
    if any(r.split is None for r in records):
        # A one-class folder cannot be split by class; without a record, it is all test.
        records = recorded_split(records, model_dir, seed, unrecorded=label is None)
    chosen = records if split == "all" else select(records, split)
    if not chosen:
        raise DataError(f"no images in the {split} split")
    return chosen


def recorded_split(
    records: Sequence[ImageRecord], model_dir: Path | None, seed: int, unrecorded: bool = True
):
    """The model's recorded split for these records; without one, the default seeded split
    (`unrecorded`) or every image as test."""
    run_split = model_dir / SPLIT_NAME if model_dir else None
    manifest = model_dir / MANIFEST_NAME if model_dir else None
    if run_split is not None and run_split.is_file():
        known = {r.path.resolve(): r.split for r in read_split_csv(run_split)}
        splits = [known.get(r.path.resolve()) for r in records]
    elif manifest is not None and manifest.is_file():
        known = {row.sha256: row.split for row in read_manifest(manifest)}
        splits = [known.get(file_sha256(r.path)) for r in records]
    elif unrecorded:
        log.warning("no recorded split for these images: making the default seeded split")
        return make_split(records, seed=seed)
    else:
        return [replace(r, split="test") for r in records]
    unseen = sum(s is None for s in splits)
    if unseen:
        log.info("%d of %d images are not in the model's recorded split: counted as test",
                 unseen, len(records))  # fmt: skip
    return [replace(r, split=s or "test") for r, s in zip(records, splits, strict=True)]


def reencoded(
    records: Sequence[ImageRecord], quality: int | None, scale: float = 1.0, history: bool = False
) -> Iterator[bytes | str | Image.Image]:
    """Each image re-encoded as JPEG at one quality, so the file format carries no label;
    with `scale`, first resized by that factor (bicubic), as if it had arrived at another size;
    with `history`, first put through `transforms.FigureHistory` (seeded by the image's index),
    the processing the diffusion faces of ../shared/fake-only went through.

    An unreadable file is passed on as its path, for the detector to report its error.
    """
    from deepfake_detect.transforms import FigureHistory, sample_rng

    for index, record in enumerate(records):
        try:
            image = load_image(record.path)
        except ImageError:
            yield str(record.path)
            continue
        if history:
            image = FigureHistory()(image, sample_rng(0, 0, index))
        if scale != 1.0:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.BICUBIC)
        if quality is None:
            yield image
            continue
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        yield buffer.getvalue()


def score_records(
    detector: Detector, records, *, batch_size=32, jpeg_quality=None, scale=1.0, progress=False,
    history=False,
):
    """Predictions for the records, in order; optionally after re-encoding them as JPEG (and
    resizing them by `scale`, or giving them the diffusion faces' history, first)."""
    if jpeg_quality is not None and not 1 <= jpeg_quality <= 100:
        raise ValueError(f"JPEG quality must be within 1-100, got {jpeg_quality}")
    if not 0.1 <= scale <= 4.0:
        raise ValueError(f"scale must be within 0.1-4, got {scale}")
    if scale != 1.0 and jpeg_quality is None:
        raise ValueError("a scale needs a JPEG quality to re-encode the resized images at")
    inputs = (
        [r.path for r in records]
        if jpeg_quality is None and not history
        else reencoded(records, jpeg_quality, scale, history)
    )
    return detector.score(inputs, batch_size=batch_size, progress=progress)


def evaluate(
    detector: Detector,
    records: Sequence[ImageRecord],
    output_dir: str | os.PathLike,
    *,
    threshold: float | None = None,
    batch_size: int = 32,
    jpeg_quality: int | None = None,
    progress: bool = False,
    history: bool = False,
) -> dict[str, Any]:
    """Score every image of the split, then compute and write the metrics on all the scores.

    With jpeg_quality, both classes are re-encoded to JPEG at that quality before scoring; with
    history, every image first gets the diffusion faces' processing history (`reencoded`).
    Metrics per source are added when the split holds several sources. `progress` shows a bar.
    """
    threshold = detector.threshold if threshold is None else check_threshold(threshold)
    predictions = score_records(
        detector, records, batch_size=batch_size, jpeg_quality=jpeg_quality, progress=progress,
        history=history,
    )
    failed = [p for p in predictions if p.score is None]
    if failed:
        log.warning("%d images could not be read and are left out; first: %s",
                    len(failed), failed[0].error)  # fmt: skip
    pairs = [(r, p.score) for r, p in zip(records, predictions, strict=True) if p.score is not None]
    if not pairs:
        raise DataError("no image of the split could be read")
    labels = np.array([r.label for r, _ in pairs])
    scores = np.array([score for _, score in pairs])
    metrics = compute_metrics(labels, scores, threshold)
    metrics["per_source"] = per_source_metrics(
        [r.source for r, _ in pairs], labels, scores, threshold
    )
    metrics |= {
        **detector.info(),
        "jpeg_quality": jpeg_quality,
        "figure_history": history,
        "failed": [p.error for p in failed],
    }
    write_report(Path(output_dir), metrics, labels, scores)
    return metrics


def per_source_metrics(sources: Sequence[str], labels, scores, threshold) -> dict[str, dict]:
    names = np.array(sources)
    return {
        source: compute_metrics(labels[names == source], scores[names == source], threshold)
        for source in sorted(set(sources))
    }


REPORT_FILES = (
    "classification_report.txt", "confusion_matrix.png", "roc.png", "reliability.png",
    "metrics.json",
)  # fmt: skip


def check_report_folder(output_dir: str | os.PathLike) -> None:
    """Refuse a report folder that could not take all the report's files: run before scoring,
    and again before writing, so no report is left half-written."""
    output_dir = Path(output_dir)
    check_output_path(output_dir, folder=True)
    for name in REPORT_FILES:
        if (output_dir / name).is_dir():
            raise ValueError(f"--output {output_dir}: {name} there is a folder; remove it first")


def write_report(output_dir: Path, metrics: dict, labels: np.ndarray, scores: np.ndarray) -> None:
    """The report's files, each written atomically, after checking that all of them can be."""
    check_report_folder(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    report = classification_report_text(labels, scores, metrics["threshold"])
    atomic_write_bytes(output_dir / REPORT_FILES[0], report.encode())
    plot_confusion_matrix(metrics["confusion_matrix"], output_dir / REPORT_FILES[1])
    plot_roc(labels, scores, output_dir / REPORT_FILES[2])
    plot_reliability(labels, scores, output_dir / REPORT_FILES[3])
    atomic_write_json(output_dir / REPORT_FILES[4], metrics)
