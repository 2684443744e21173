"""The statistics, table and chart of a comparison of models evaluated on the same images.

A comparison row holds one evaluated run: accuracy, F1 of the fake class, ROC-AUC, average
precision and equal error rate, each with its 95% percentile-bootstrap interval, the paired
bootstrap difference of its ROC-AUC to the first model evaluated on the same images, and its
costs (parameters, FLOPs, CPU images/s, training time). Running the comparison is the training
layer's (`training.comparison`); here are only numbers and their presentation.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, roc_auc_score

from deepfake_detect.evaluation.metrics import (
    _has_both_classes,
    _percentile_interval,
    equal_error_rate,
)
from deepfake_detect.evaluation.plots import _save_figure
from deepfake_detect.files import atomic_write_bytes

log = logging.getLogger("deepfake_detect")

TABLE_NAMES = ("comparison.md", "comparison.csv", "comparison.png")
_WITH_INTERVALS = ("accuracy", "f1", "roc_auc", "average_precision", "eer", "auc_difference")
COLUMNS = (
    "backbone", "tested_on", "images",
    *(f"{name}{end}" for name in _WITH_INTERVALS for end in ("", "_low", "_high")),
    "parameters", "gflops", "cpu_images_s", "training_minutes",
)  # fmt: skip
"""The CSV's columns; `auc_difference` is ROC-AUC minus the first backbone's on the same images."""


def bootstrap_interval(
    statistic: Callable[..., float], labels, *scores, n_resamples=1000, level=0.95, seed=0
) -> list[float] | None:
    """Percentile interval of `statistic(labels, *scores)` over resamples of the images drawn
    with replacement; resamples of one class are skipped (ranking metrics need both). Several
    score arrays are drawn together, image by image: the interval of a paired difference, much
    narrower than two separate intervals. None when no resample holds both classes."""
    labels, arrays = np.asarray(labels), [np.asarray(s) for s in scores]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        i = rng.integers(0, len(labels), len(labels))
        if labels[i].min() == labels[i].max():
            continue
        values.append(statistic(labels[i], *(a[i] for a in arrays)))
    return _percentile_interval(np.array(values, dtype=np.float64), level)


def paired_auc_difference(labels, scores_a, scores_b, *, n_resamples=2000, level=0.95, seed=0):
    """(AUC(a) - AUC(b), low, high): the difference and its paired bootstrap interval. An
    interval that excludes 0 is how docs/experiments.md decides that one model is better."""
    labels = np.asarray(labels)
    if len(set(labels.tolist())) < 2:
        raise ValueError("both classes are needed for ROC-AUC (a source has only one)")
    low, high = bootstrap_interval(
        _auc_difference, labels, scores_a, scores_b, n_resamples=n_resamples, level=level,
        seed=seed,
    )  # fmt: skip
    return _auc_difference(labels, np.asarray(scores_a), np.asarray(scores_b)), low, high


def _auc_difference(labels, a, b) -> float:
    return roc_auc_score(labels, a) - roc_auc_score(labels, b)


def fake_f1(labels, scores, threshold: float) -> float:
    """F1 of the fake class at the threshold (0 when it is undefined, as in `compute_metrics`)."""
    fake, predicted = np.asarray(labels) == 1, np.asarray(scores) >= threshold
    true_positives = int((fake & predicted).sum())
    wrong = int((fake ^ predicted).sum())
    return 2 * true_positives / (2 * true_positives + wrong) if true_positives else 0.0


@dataclass
class Evaluated:
    """One run of a comparison, as its row needs it."""

    backbone: str
    tested_on: str  # the images: rows with the same are paired
    metrics: dict  # the evaluation's metrics.json
    scores: dict[str, tuple[int, float]]  # its scores.csv: path -> (label, score)
    costs: dict  # parameters, flops_per_image, cpu_images_s, training_seconds (None: unknown)


def read_scores(path: Path) -> dict[str, tuple[int, float]]:
    """An evaluation's scores.csv (`runs.write_scores`): path -> (label, score)."""
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as file:
        return {
            row["path"]: (int(row["label"]), float(row["score"])) for row in csv.DictReader(file)
        }


def comparison_rows(runs: Sequence[Evaluated], n_resamples=1000, seed=0) -> list[dict]:
    """A row per run (`COLUMNS`); the first run tested on some images is the reference of the
    others tested on them."""
    reference: dict[str, Evaluated] = {}
    for run in runs:
        reference.setdefault(run.tested_on, run)
    return [_row(run, reference[run.tested_on], n_resamples, seed) for run in runs]


def _row(run: Evaluated, reference: Evaluated, n_resamples: int, seed: int) -> dict:
    m, intervals = run.metrics, run.metrics["intervals"]
    labels, scores = _arrays(run.scores, sorted(run.scores))
    threshold = m["threshold"]

    def interval(statistic):
        if not _has_both_classes(labels):
            return None
        return bootstrap_interval(statistic, labels, scores, n_resamples=n_resamples, seed=seed)

    values = {
        "accuracy": (m["accuracy"], intervals["accuracy"]),
        "f1": (m["per_class"]["fake"]["f1"], interval(lambda y, s: fake_f1(y, s, threshold))),
        "roc_auc": (m["roc_auc"], intervals["roc_auc"]),
        "average_precision": (m["average_precision"], interval(average_precision_score)),
        "eer": (m["eer"], interval(equal_error_rate)),
        "auc_difference": _paired(run, reference, n_resamples, seed),
    }
    row = {"backbone": run.backbone, "tested_on": run.tested_on, "images": m["n_images"]}
    for name, (value, bounds) in values.items():
        low, high = bounds or (None, None)
        row |= {name: value, f"{name}_low": low, f"{name}_high": high}
    c = run.costs
    return row | {
        "parameters": c.get("parameters"),
        "gflops": None if c.get("flops_per_image") is None else c["flops_per_image"] / 1e9,
        "cpu_images_s": c.get("cpu_images_s"),
        "training_minutes": None if c.get("training_seconds") is None
        else c["training_seconds"] / 60,
    }  # fmt: skip


def _arrays(scores: dict[str, tuple[int, float]], paths: list[str]):
    return np.array([scores[p][0] for p in paths]), np.array([scores[p][1] for p in paths])


def _paired(run: Evaluated, reference: Evaluated, n_resamples: int, seed: int):
    """(difference, [low, high]) of the ROC-AUC to the reference's, on the same images."""
    if set(run.scores) != set(reference.scores):
        log.warning("%s and %s were not scored on the same images: no paired difference",
                    run.backbone, reference.backbone)  # fmt: skip
        return None, None
    paths = sorted(run.scores)
    labels, scores = _arrays(run.scores, paths)
    if not _has_both_classes(labels):
        return None, None
    diff, low, high = paired_auc_difference(
        labels, scores, _arrays(reference.scores, paths)[1], n_resamples=n_resamples, seed=seed
    )
    return float(diff), [low, high]


def comparison_csv(rows: Sequence[dict]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return text.getvalue()


MARKDOWN_HEADER = (
    "backbone", "tested on", "images", "accuracy", "F1 (fake)", "ROC-AUC", "AP", "EER",
    "ROC-AUC - first", "parameters", "GFLOPs", "CPU images/s", "training",
)  # fmt: skip


def comparison_markdown(rows: Sequence[dict], caption: str) -> str:
    """The caption, then the table with each interval in brackets."""
    lines = [caption, "", _markdown_line(MARKDOWN_HEADER), _markdown_line(["---"] * 13)]
    for row in rows:
        cells = [row["backbone"], row["tested_on"], str(row["images"])]
        cells += [_with_interval(row, name) for name in _WITH_INTERVALS[:-1]]
        cells.append(_with_interval(row, "auc_difference", "+.3f"))
        cells += [
            _number(None if row["parameters"] is None else row["parameters"] / 1e6, ".2f", " M"),
            _number(row["gflops"], ".2f"),
            _number(row["cpu_images_s"], ".0f"),
            _number(row["training_minutes"], ".1f", " min"),
        ]
        lines.append(_markdown_line(cells))
    return "\n".join(lines) + "\n"


def _markdown_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _number(value: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def _with_interval(row: dict, name: str, spec: str = ".3f") -> str:
    value, low, high = row[name], row[f"{name}_low"], row[f"{name}_high"]
    if value is None or low is None:
        return _number(value, spec)
    return f"{value:{spec}} [{low:{spec}}, {high:{spec}}]"


def plot_comparison(rows: Sequence[dict], path: str | os.PathLike) -> None:
    """ROC-AUC with its interval per backbone, grouped by the images tested on; beside it,
    ROC-AUC against CPU images/s (the trade-off a backbone is chosen by)."""
    fig = Figure(figsize=(11, 4.2))
    quality, speed = fig.subplots(1, 2)
    tested = list(dict.fromkeys(r["tested_on"] for r in rows))
    backbones = list(dict.fromkeys(r["backbone"] for r in rows))
    width = 0.6 / max(1, len(backbones) - 1) if len(backbones) > 1 else 0.0
    for k, backbone in enumerate(backbones):
        own = [r for r in rows if r["backbone"] == backbone and r["roc_auc"] is not None]
        xs = [tested.index(r["tested_on"]) + (k - (len(backbones) - 1) / 2) * width for r in own]
        aucs = np.array([r["roc_auc"] for r in own])
        spread = np.array(
            [
                [r["roc_auc"] - (r["roc_auc_low"] or r["roc_auc"]) for r in own],
                [(r["roc_auc_high"] or r["roc_auc"]) - r["roc_auc"] for r in own],
            ]
        )
        quality.errorbar(xs, aucs, yerr=spread, fmt="o", capsize=3, label=backbone)
        timed = [r for r in own if r["cpu_images_s"]]
        speed.plot([r["cpu_images_s"] for r in timed], [r["roc_auc"] for r in timed], "o",
                   label=backbone)  # fmt: skip
    quality.set_xticks(range(len(tested)), tested, fontsize=8)
    quality.set_xlim(-0.6, len(tested) - 0.4)
    quality.set(ylabel="ROC-AUC (95% interval)", title="ROC-AUC by images tested on")
    quality.legend(fontsize=8)
    speed.set(xlabel="CPU images/s", ylabel="ROC-AUC", title="ROC-AUC against CPU speed")
    if any(r["cpu_images_s"] for r in rows):
        speed.set_xscale("log")
    for ax in (quality, speed):
        ax.grid(alpha=0.3)
    _save_figure(fig, path)


def write_comparison(rows: Sequence[dict], output_dir: Path, caption: str) -> list[Path]:
    """comparison.md, comparison.csv and comparison.png in output_dir, each written whole."""
    paths = [output_dir / name for name in TABLE_NAMES]
    atomic_write_bytes(paths[0], comparison_markdown(rows, caption).encode())
    atomic_write_bytes(paths[1], comparison_csv(rows).encode())
    plot_comparison(rows, paths[2])
    return paths
