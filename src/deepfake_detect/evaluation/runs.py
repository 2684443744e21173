"""Evaluate a detector on one split of a dataset: metrics.json, report, confusion matrix, ROC."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from deepfake_detect.data.datasets import (
    ImageRecord,
)
from deepfake_detect.data.images import load_image
from deepfake_detect.distributed import current_world, map_across_ranks
from deepfake_detect.errors import DataError, ImageError
from deepfake_detect.evaluation.metrics import classification_report_text, compute_metrics
from deepfake_detect.evaluation.plots import plot_confusion_matrix, plot_reliability, plot_roc
from deepfake_detect.files import atomic_write_bytes, atomic_write_json, check_output_path
from deepfake_detect.models.config import check_threshold

if TYPE_CHECKING:
    from deepfake_detect.inference.detector import Detector

log = logging.getLogger("deepfake_detect")


def reencoded(
    records: Sequence[ImageRecord],
    quality: int | None,
    scale: float = 1.0,
    history: bool = False,
    change: str | None = None,
) -> Iterator[bytes | str | Image.Image]:
    """Each image re-encoded as JPEG at one quality, so the file format carries no label;
    with `scale`, first resized by that factor (bicubic), as if it had arrived at another size;
    with `history`, first put through `transforms.FigureHistory` (seeded by the image's index),
    the processing the diffusion faces of ../shared/fake-only went through; with `change`, then
    one of `transforms.EVERYDAY_CHANGES` (a rotation, a crop, ...), saved at its quality.

    An unreadable file is passed on as its path, for the detector to report its error.
    """
    from deepfake_detect.data.transforms import FigureHistory, everyday_change, sample_rng

    changed, change_quality = everyday_change(change) if change else (None, None)
    quality = change_quality or quality
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
        if changed is not None:
            image = changed(image)
        if quality is None:
            yield image
            continue
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        yield buffer.getvalue()


def check_jpeg_quality(quality: int | None) -> None:
    if quality is not None and not 1 <= quality <= 100:
        raise ValueError(f"--jpeg-quality must be within 1-100, got {quality}")


def score_records(
    detector: Detector, records, *, batch_size=32, jpeg_quality=None, scale=1.0, progress=False,
    history=False, change=None, faces="off",
):
    """Predictions for the records, in order; optionally after re-encoding them as JPEG (and
    resizing them by `scale`, or giving them the diffusion faces' history, first), or after an
    everyday change (`transforms.EVERYDAY_CHANGES`, which sets its own JPEG quality)."""
    if change is not None and jpeg_quality is not None:
        raise ValueError("a change sets its own JPEG quality: give --change or --jpeg-quality")
    check_jpeg_quality(jpeg_quality)
    if not 0.1 <= scale <= 4.0:
        raise ValueError(f"scale must be within 0.1-4, got {scale}")
    if scale != 1.0 and jpeg_quality is None:
        raise ValueError("a scale needs a JPEG quality to re-encode the resized images at")

    def score(part):
        inputs = (
            [r.path for r in part]
            if jpeg_quality is None and not history and change is None
            else reencoded(part, jpeg_quality, scale, history, change)
        )
        return detector.score(inputs, batch_size=batch_size, progress=progress, faces=faces)

    world = current_world()  # under torchrun, each rank scores its share
    rounds = max(len(records), 1)
    return list(map_across_ranks(world, list(records), score, rounds, align=batch_size))


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
    change: str | None = None,
    faces: str = "off",
) -> dict[str, Any]:
    """Score every image of the split, then compute and write the metrics on all the scores.

    With jpeg_quality, both classes are re-encoded to JPEG at that quality before scoring; with
    history, every image first gets the diffusion faces' processing history (`reencoded`); with
    change, every image goes through that everyday change (a rotation, a crop, ...) first.
    Metrics per source are added when the split holds several sources. `progress` shows a bar.
    `faces` on scores each image by its highest face, auto by the highest of its faces' and
    its own whole-image score (`Detector.score`).
    """
    threshold = detector.threshold if threshold is None else check_threshold(threshold)
    predictions = score_records(
        detector, records, batch_size=batch_size, jpeg_quality=jpeg_quality, progress=progress,
        history=history, change=change, faces=faces,
    )
    failed = [p for p in predictions if p.score is None]
    if failed:
        log.warning("%d image(s) could not be read and are left out; first: %s",
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
        "change": change,
        "faces": faces,
        "failed": [p.error for p in failed],
    }
    if current_world().main:
        check_report_folder(output_dir)
        with staged_folder(Path(output_dir)) as staging:
            write_report(staging, metrics, labels, scores)
            write_scores(staging / SCORES_FILE, [r for r, _ in pairs], scores)
            sources = [r.source for r, _ in pairs]
            _write_html(staging, metrics, labels, scores, sources, detector)
    return metrics


@contextlib.contextmanager
def staged_folder(output_dir: Path) -> Iterator[Path]:
    """A hidden folder to write a report's files into, moved into `output_dir` only when
    all of them are written: a failed write (a full disk) leaves `output_dir` as it was,
    rather than with some files of the new report beside the rest of an old one. An OSError
    names the file of `output_dir` that could not be written, not the hidden one."""
    existed = output_dir.is_dir()
    try:
        if existed:  # renames within one folder's file system cannot fail for space
            staging = Path(tempfile.mkdtemp(dir=output_dir, prefix=".report-"))
        else:
            output_dir.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}."))
            os.chmod(staging, 0o777 & ~_umask())  # it becomes the report folder: not private
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(output_dir)) from None
    try:
        yield staging
        if existed:
            for made in staging.iterdir():
                os.replace(made, output_dir / made.name)
            staging.rmdir()
        else:
            os.rename(staging, output_dir)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            name = Path(exc.filename).name if exc.filename else ""
            target = output_dir / name if name and not name.startswith(".") else output_dir
            raise OSError(exc.errno, exc.strerror, str(target)) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_html(output_dir, metrics, labels, scores, sources, detector: Detector) -> None:
    from deepfake_detect.evaluation.report_html import write_html_report

    c = detector.config
    card = {
        **detector.info(), "backbone": c.backbone, "head": c.head, "image_size": c.image_size,
        "threshold": c.threshold, "temperature": c.temperature,
        "training_data": [str(d) for d in c.training.get("data", [])],
    }  # fmt: skip
    figures = [output_dir / name for name in REPORT_FILES[1:4]]
    write_html_report(output_dir / "report.html", metrics, labels, scores, sources, card, figures)


SCORES_FILE = "scores.csv"


def write_scores(path: Path, records, scores: np.ndarray) -> None:
    """Each image's score (path, source, label, score): what a paired comparison of two
    models needs, small enough to keep when the model itself is gone."""
    import csv
    import io

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["path", "source", "label", "score"])
    for record, score in zip(records, scores, strict=True):
        writer.writerow([record.path.as_posix(), record.source, record.label, f"{score:.8g}"])
    atomic_write_bytes(path, text.getvalue().encode("utf-8", "surrogateescape"))


def per_source_metrics(sources: Sequence[str], labels, scores, threshold) -> dict[str, dict]:
    names = np.array(sources)
    return {
        source: compute_metrics(labels[names == source], scores[names == source], threshold)
        for source in sorted(set(sources))
    }


REPORT_FILES = (
    "classification_report.txt", "confusion_matrix.png", "roc.png", "reliability.png",
    "metrics.json", "scores.csv", "report.html",
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
