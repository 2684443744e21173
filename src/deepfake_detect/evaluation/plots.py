"""Figures for evaluation and training reports, written atomically as image files.

Figures are built as ``matplotlib.figure.Figure`` objects drawn by the Agg canvas, so nothing
here touches pyplot's global state or needs a display, and plotting is safe in worker
processes and on headless servers.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import roc_auc_score, roc_curve

from deepfake_detect.evaluation.metrics import (
    CALIBRATION_BINS,
    CLASS_NAMES,
    _has_both_classes,
    _validate,
    expected_calibration_error,
    reliability_bins,
)


def _save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Write ``fig`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    A process killed mid-write then leaves either the old file or none, never a truncated
    image; the temporary file lives in the same folder so the rename is atomic.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fmt = target.suffix.lstrip(".").lower() or "png"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            FigureCanvasAgg(fig)
            fig.savefig(fh, format=fmt, dpi=120, bbox_inches="tight")
        # mkstemp creates the file readable by its owner only; give it normal permissions.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _current_umask() -> int:
    """The process umask (only readable by setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]] | np.ndarray,
    path: str | os.PathLike,
    class_names: Sequence[str] = CLASS_NAMES,
    title: str = "Confusion matrix",
) -> None:
    """Confusion matrix heat map (rows true, columns predicted) annotated with counts."""
    counts = np.asarray(matrix, dtype=np.int64)
    k = len(class_names)
    if counts.shape != (k, k):
        raise ValueError(
            f"matrix must be square with one row per class name, got shape {counts.shape}"
        )
    fig = Figure(figsize=(4.5, 4))
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    _annotate_counts(ax, counts)
    ticks = np.arange(len(class_names))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=class_names, yticklabels=class_names)
    ax.set(xlabel="Predicted", ylabel="True", title=title)
    _save_figure(fig, path)


def _annotate_counts(ax, counts: np.ndarray) -> None:
    """Write each count and its share of the true class, in a colour readable on the cell."""
    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_totals, out=np.zeros(counts.shape), where=row_totals > 0)
    dark = counts > counts.max() / 2 if counts.max() > 0 else np.zeros(counts.shape, bool)
    for (i, j), count in np.ndenumerate(counts):
        ax.text(
            j,
            i,
            f"{count}\n({shares[i, j]:.1%})",
            ha="center",
            va="center",
            color="white" if dark[i, j] else "black",
        )


def plot_roc(labels, scores, path: str | os.PathLike, title: str = "ROC curve") -> None:
    """ROC curve with its AUC in the legend and the chance diagonal.

    With a single class the curve is undefined; a figure saying so is written instead so that
    a report always has its image.
    """
    y, s = _validate(labels, scores)
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot()
    if _has_both_classes(y):
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, lw=2, label=f"AUC = {roc_auc_score(y, s):.4f}")
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "ROC undefined: only one class", ha="center", va="center")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate", ylabel="True positive rate")
    ax.set(title=title, aspect="equal")
    _save_figure(fig, path)


def plot_reliability(labels, scores, path: str | os.PathLike, title: str = "Reliability") -> None:
    """Reliability diagram: the share of fakes against the mean P(fake) in each equal-width bin
    (a calibrated model lies on the diagonal), with the images per bin below."""
    y, s = _validate(labels, scores)
    bins = [b for b in reliability_bins(y, s) if b["count"]]
    fig = Figure(figsize=(4.5, 5.5))
    top, bottom = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    top.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="calibrated")
    top.plot([b["mean_score"] for b in bins], [b["fraction_fake"] for b in bins], "o-", lw=2,
             label=f"model (ECE {expected_calibration_error(y, s):.3f})")  # fmt: skip
    top.set(xlim=(0, 1), ylim=(0, 1.01), ylabel="share of fakes", title=title)
    top.legend(loc="upper left")
    width = 1.0 / CALIBRATION_BINS
    bottom.bar([b["lower"] for b in bins], [b["count"] for b in bins], width=width,
               align="edge", color="tab:blue", alpha=0.6)  # fmt: skip
    bottom.set(xlabel="mean P(fake) in the bin", ylabel="images", yscale="log")
    fig.tight_layout()
    _save_figure(fig, path)


def _as_float(value) -> float:
    """A history value as float; missing (None, '', unparsable) becomes NaN, a gap in the line."""
    if value is None or value == "":
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _phase_changes(history: list[dict]) -> list[tuple[float, str]]:
    """(x position, new phase) between consecutive rows whose phase differs."""
    phases = [row.get("phase") for row in history]
    return [(i + 0.5, str(phases[i])) for i in range(1, len(phases)) if phases[i] != phases[i - 1]]


def plot_training_curves(history: list[dict], path: str | os.PathLike) -> None:
    """Loss and accuracy per epoch, training and validation, with phase changes marked.

    Rows are plotted in order against a global epoch index 1..len(history), because the
    per-phase ``epoch`` field restarts when fine-tuning begins.
    """
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    x = np.arange(1, len(history) + 1)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for split, style in (("train", "-o"), ("val", "--s")):
            values = [_as_float(row.get(f"{split}_{metric}")) for row in history]
            label = "train" if split == "train" else "validation"
            ax.plot(x, values, style, markersize=3, label=label)
        for position, phase in _phase_changes(history):
            ax.axvline(position, color="grey", ls="--", lw=1)
            ax.annotate(
                phase,
                (position, 1),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12),
                textcoords="offset points",
                fontsize=8,
                color="grey",
            )
        ax.set(xlabel="epoch", ylabel=metric, title=metric.capitalize())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if not history:
            ax.text(
                0.5, 0.5, "no training history", ha="center", va="center", transform=ax.transAxes
            )
        else:
            ax.legend()
    _save_figure(fig, path)


def plot_learning_curve(
    curves: dict[str, list[tuple[int, float, Sequence[float] | None]]],
    path: str | os.PathLike,
    xlabel: str = "training images",
) -> None:
    """1 - ROC-AUC against the number of training images, both on log scales (where a constant
    gain per doubling is a straight line), one line per curve with its 95% interval as bars.

    `curves` maps a label to points (n, roc_auc, [low, high] or None)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    drawn = []  # every 1 - ROC-AUC drawn, bars included
    for label, points in curves.items():
        points = sorted(points)
        n = np.array([p[0] for p in points], float)
        error = np.array([1 - p[1] for p in points])
        spans = [p[2] or (p[1], p[1]) for p in points]
        below = error - np.array([1 - high for _, high in spans])
        above = np.array([1 - low for low, _ in spans]) - error
        ax.errorbar(n, error, yerr=[below, above], fmt="-o", markersize=4, capsize=3, label=label)
        drawn += [*(error - below), *(error + above)]
    ax.set(xlabel=xlabel, ylabel="1 - ROC-AUC", title="Learning curve (lower is better)")
    if curves:
        positive = [v for v in drawn if v > 0]
        if positive and min(positive) == max(positive):  # one value: a decade around it
            ax.set_ylim(positive[0] / 3, positive[0] * 3)
        ax.set(xscale="log", yscale="log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no points", ha="center", va="center", transform=ax.transAxes)
    _save_figure(fig, path)


def plot_robustness(rows: Sequence[dict], xlabel: str, path: str | os.PathLike) -> None:
    """Accuracy and ROC-AUC (with their 95% intervals as bands) at each level of one
    perturbation, in the order the levels were measured (mildest first)."""
    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot()
    positions = np.arange(len(rows))
    for key, label in (("accuracy", "accuracy"), ("roc_auc", "ROC-AUC")):
        values = np.array([_as_float(r[key]) for r in rows])
        ax.plot(positions, values, "o-", lw=2, label=label)
        bounds = [r.get(f"{key}_interval") or (None, None) for r in rows]
        low = np.array([_as_float(b[0]) for b in bounds])
        high = np.array([_as_float(b[1]) for b in bounds])
        ax.fill_between(positions, low, high, alpha=0.2)
    ax.set_xticks(positions, [f"{r['level']:g}" for r in rows])
    ax.set(xlabel=xlabel, ylabel="on the images", ylim=(0.0, 1.01), title=rows[0]["perturbation"])
    ax.axhline(0.5, ls="--", color="grey", lw=1)
    ax.legend(loc="lower left")
    fig.tight_layout()
    _save_figure(fig, path)


def plot_curves_by_source(labels, scores, sources: Sequence[str], path: str | os.PathLike) -> None:
    """ROC curves (left) and reliability diagrams (right) of each source, one colour each."""
    y, s = _validate(labels, scores)
    names = np.array(sources)
    fig = Figure(figsize=(10, 4.5))
    roc_ax, rel_ax = fig.subplots(1, 2)
    roc_ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    rel_ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    for source in sorted(set(sources)):
        mask = names == source
        ys, ss = y[mask], s[mask]
        if _has_both_classes(ys):
            fpr, tpr, _ = roc_curve(ys, ss)
            roc_ax.plot(fpr, tpr, lw=2, label=f"{source} (AUC {roc_auc_score(ys, ss):.3f})")
        bins = [b for b in reliability_bins(ys, ss) if b["count"]]
        label = f"{source} (ECE {expected_calibration_error(ys, ss):.3f})"
        rel_ax.plot([b["mean_score"] for b in bins], [b["fraction_fake"] for b in bins], "o-",
                    lw=1.5, label=label)  # fmt: skip
    roc_ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate",
               ylabel="True positive rate", title="ROC by source")  # fmt: skip
    rel_ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="mean P(fake) in the bin",
               ylabel="share of fakes", title="Reliability by source")  # fmt: skip
    for ax in (roc_ax, rel_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)
