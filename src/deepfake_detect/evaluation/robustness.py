"""How a model holds up under perturbations at graded strengths: JPEG re-compression, blur,
downscaling, noise and a screenshot-like resample (`data.transforms.PERTURBATIONS`).

One row per perturbation and level (accuracy and ROC-AUC with 95% bootstrap intervals, real
photos called fake and fakes caught at the model's threshold), written as CSV, Markdown and JSON
with one plot per perturbation. The images are perturbed in memory, one batch at a time.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_detect.data.datasets import ImageRecord
from deepfake_detect.data.images import load_image
from deepfake_detect.data.transforms import PERTURBATIONS, perturb, sample_rng
from deepfake_detect.errors import DataError, ImageError
from deepfake_detect.evaluation.metrics import compute_metrics
from deepfake_detect.files import atomic_write_bytes, atomic_write_json, check_output_path
from deepfake_detect.inference.detector import Detector

COLUMNS = ("perturbation", "level", "images", "accuracy", "accuracy_interval", "roc_auc",
           "roc_auc_interval", "false_alarm_rate", "detection_rate")  # fmt: skip


def check_perturbations(names: Sequence[str]) -> list[str]:
    unknown = [n for n in names if n not in PERTURBATIONS]
    if unknown or not names:
        raise ValueError(
            f"--perturbations must name some of {', '.join(PERTURBATIONS)}, not {unknown}"
        )
    return list(names)


def robustness(
    detector: Detector,
    records: Sequence[ImageRecord],
    output_dir: str | os.PathLike,
    *,
    perturbations: Sequence[str] = tuple(PERTURBATIONS),
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Score every record under every level of every perturbation; write the table and the
    plots into `output_dir`. Unreadable images are left out (the same ones at every level)."""
    from deepfake_detect.evaluation.plots import plot_robustness
    from deepfake_detect.progress import progress_bar

    check_perturbations(perturbations)
    output_dir = Path(output_dir)
    check_output_path(output_dir, folder=True)
    readable = [r for r in records if _readable(r)]
    if not readable:
        raise DataError("no image could be read")
    labels = np.array([r.label for r in readable])
    rows: list[dict[str, Any]] = []
    total = len(readable) * sum(len(PERTURBATIONS[n][1]) for n in perturbations)
    with progress_bar(total, "perturbed", progress) as bar:
        for k, name in enumerate(perturbations):
            for level in PERTURBATIONS[name][1]:
                inputs = (
                    perturb(load_image(r.path), name, level, sample_rng(seed, k, i))
                    for i, r in enumerate(readable)
                )
                scores = []
                for prediction in detector.iter_scores(inputs, batch_size=batch_size):
                    scores.append(prediction.score)
                    bar.update(1)
                rows.append(_row(name, level, labels, np.array(scores), detector.threshold))
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in perturbations:
        mine = [r for r in rows if r["perturbation"] == name]
        plot_robustness(mine, PERTURBATIONS[name][0], output_dir / f"robustness-{name}.png")
    _write_tables(output_dir, rows, detector)
    return rows


def _readable(record: ImageRecord) -> bool:
    try:
        load_image(record.path)
    except ImageError:
        return False
    return True


def _row(name: str, level: float, labels, scores, threshold: float) -> dict[str, Any]:
    m = compute_metrics(labels, scores, threshold, n_bootstrap=200)
    return {
        "perturbation": name, "level": float(level), "images": int(labels.size),
        "accuracy": m["accuracy"], "accuracy_interval": m["intervals"]["accuracy"],
        "roc_auc": m["roc_auc"], "roc_auc_interval": m["intervals"]["roc_auc"],
        "false_alarm_rate": m["false_alarm_rate"], "detection_rate": m["detection_rate"],
    }  # fmt: skip


def format_table(rows: Sequence[dict]) -> str:
    def cell(value, interval=None) -> str:
        if value is None:
            return "n/a"
        text = f"{value:.3f}"
        if interval:
            text += f" [{interval[0]:.3f}, {interval[1]:.3f}]"
        return text

    lines = [
        "| perturbation | level | images | accuracy | ROC-AUC | reals called fake | fakes caught |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['perturbation']} | {r['level']:g} | {r['images']} | "
            f"{cell(r['accuracy'], r['accuracy_interval'])} | "
            f"{cell(r['roc_auc'], r['roc_auc_interval'])} | {cell(r['false_alarm_rate'])} | "
            f"{cell(r['detection_rate'])} |"
        )
    return "\n".join(lines)


def _write_tables(output_dir: Path, rows: Sequence[dict], detector: Detector) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([_csv(r[c]) for c in COLUMNS])
    atomic_write_bytes(output_dir / "robustness.csv", text.getvalue().encode())
    atomic_write_bytes(output_dir / "robustness.md", (format_table(rows) + "\n").encode())
    atomic_write_json(output_dir / "robustness.json", {**detector.info(),
                      "threshold": detector.threshold, "rows": list(rows)})  # fmt: skip


def _csv(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return " ".join(f"{v:.4f}" for v in value)
    return f"{value:.6g}" if isinstance(value, float) else str(value)
