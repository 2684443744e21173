"""Evaluation metrics for the real-versus-fake classifier.

Conventions, shared with the rest of the package: label 0 is a real photograph, label 1 a
generated (fake) one, a score is the model's P(fake) in [0, 1], and an image is predicted fake
when ``score >= threshold``.

Everything returned by :func:`compute_metrics` is JSON-ready: python ``int``/``float``, lists,
and ``None`` for quantities that are undefined on the given data (never NaN), so a report can be
written with ``json.dumps(..., allow_nan=False)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

CLASS_NAMES = ("real", "fake")

# Resamples are processed in blocks so that 1000 resamples of 20,000 images never need a
# 1000 x 20,000 index matrix (160 MB) at once.
_BOOTSTRAP_BLOCK = 64

# Balanced accuracies closer than this are treated as equal when choosing a threshold, so
# that rounding noise does not decide between thresholds that are equally good.
_TIE_TOLERANCE = 1e-12


def _validate(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray):
    """Check labels/scores and return them as ``(int64 array, float64 array)``.

    Raises ValueError with a message that names the problem, because these arrays usually
    come from files or models the user controls.
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(
            f"labels and scores must be one-dimensional, got shapes {y.shape} and {s.shape}"
        )
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} != {s.shape[0]}")
    if y.shape[0] == 0:
        raise ValueError("no images to evaluate: labels and scores are empty")
    try:
        y_float = y.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError("labels must be 0 (real) or 1 (fake)") from exc
    bad_labels = ~np.isin(y_float, (0.0, 1.0))
    if bad_labels.any():
        i = int(np.flatnonzero(bad_labels)[0])
        raise ValueError(f"labels must be 0 (real) or 1 (fake); found {y[i]!r} at index {i}")
    bad_scores = ~(np.isfinite(s) & (s >= 0.0) & (s <= 1.0))
    if bad_scores.any():
        i = int(np.flatnonzero(bad_scores)[0])
        raise ValueError(
            f"scores must be finite probabilities in [0, 1]; found {s[i]} at index {i}"
        )
    return y_float.astype(np.int64), s


def _check_threshold(threshold: float) -> float:
    """Return the threshold as a float, refusing NaN/inf which would silently predict one class."""
    t = float(threshold)
    if not np.isfinite(t):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    return t


def _has_both_classes(y: np.ndarray) -> bool:
    """True when at least one real and one fake image are present (ranking metrics need both)."""
    n_fake = int(y.sum())
    return 0 < n_fake < y.size


def binary_cross_entropy(labels, scores, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities ``scores`` against ``labels``.

    Scores are clipped to ``[eps, 1 - eps]`` so a confident wrong answer costs a large but
    finite loss instead of infinity.
    """
    y, s = _validate(labels, scores)
    p = np.clip(s, eps, 1.0 - eps)
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log1p(-p))))


def _balanced_accuracy_at(y: np.ndarray, s: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Balanced accuracy ``(TPR + TNR) / 2`` for every threshold, in O((n + k) log n)."""
    real = np.sort(s[y == 0])
    fake = np.sort(s[y == 1])
    # side="left" counts values strictly below t: those are the images predicted real.
    tnr = np.searchsorted(real, thresholds, side="left") / real.size
    tpr = 1.0 - np.searchsorted(fake, thresholds, side="left") / fake.size
    return (tpr + tnr) / 2.0


def choose_threshold(labels, scores) -> float:
    """Threshold that maximises balanced accuracy on these (validation) scores.

    Candidates are the unique scores plus the next float above the maximum (predict everything
    real). Among equally good candidates the one closest to 0.5 wins, and of two equally close
    the lower one. With a single class present balanced accuracy cannot rank thresholds, so 0.5
    is returned.
    """
    y, s = _validate(labels, scores)
    if not _has_both_classes(y):
        return 0.5
    unique = np.unique(s)
    candidates = np.append(unique, np.nextafter(unique[-1], np.inf))
    balanced = _balanced_accuracy_at(y, s, candidates)
    best = np.flatnonzero(balanced >= balanced.max() - _TIE_TOLERANCE)
    # Candidates are sorted ascending, so argmin's first-hit rule picks the lower of two
    # thresholds at the same distance from 0.5.
    winner = best[np.argmin(np.abs(candidates[best] - 0.5))]
    return float(candidates[winner])


def equal_error_rate(labels, scores) -> float | None:
    """Equal error rate: the rate at which false positives and false negatives are equal.

    Computed on the ROC curve, interpolating linearly between the two ROC points where
    ``FNR - FPR`` changes sign. Returns None when one class is missing.
    """
    y, s = _validate(labels, scores)
    if not _has_both_classes(y):
        return None
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    diff = (1.0 - tpr) - fpr  # decreasing from 1 (threshold above max) to -1 (below min)
    i = int(np.flatnonzero(diff <= 0.0)[0])
    if diff[i] == 0.0 or i == 0:
        return float(fpr[i])
    frac = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(fpr[i - 1] + frac * (fpr[i] - fpr[i - 1]))


def tpr_at_fpr(labels, scores, fpr: float = 0.01) -> float | None:
    """True-positive rate at the most permissive threshold whose false-positive rate <= ``fpr``.

    Step (not interpolated) reading of the empirical ROC curve: the highest TPR reached by an
    actual threshold without exceeding the FPR budget, so the number is achievable in practice.
    Returns None when one class is missing.
    """
    if not 0.0 <= float(fpr) <= 1.0:
        raise ValueError(f"fpr must be within [0, 1], got {fpr!r}")
    y, s = _validate(labels, scores)
    if not _has_both_classes(y):
        return None
    fprs, tprs, _ = roc_curve(y, s, drop_intermediate=False)
    return float(tprs[fprs <= fpr].max())


def _bootstrap_block(
    keys: np.ndarray, correct: np.ndarray, n_groups: int, rng: np.random.Generator, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and AUC (NaN where a class is absent) for ``size`` resamples.

    Each image has a key ``2 * rank_of_its_score + label``. Counting keys per resample gives,
    for every distinct score, how many reals and fakes were drawn; AUC then follows from
    cumulative sums (Mann-Whitney with ties counted half) without sorting each resample.
    """
    n = keys.size
    idx = rng.integers(0, n, size=(size, n))
    accuracy = correct[idx].mean(axis=1)
    offsets = (np.arange(size) * 2 * n_groups)[:, None]
    counts = np.bincount((keys[idx] + offsets).ravel(), minlength=size * 2 * n_groups)
    counts = counts.reshape(size, n_groups, 2).astype(np.float64)
    real, fake = counts[..., 0], counts[..., 1]
    reals_below = np.cumsum(real, axis=1) - real
    wins = (fake * (reals_below + 0.5 * real)).sum(axis=1)
    pairs = real.sum(axis=1) * fake.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1.0), np.nan)
    return accuracy, auc


def _percentile_interval(values: np.ndarray, level: float) -> list[float] | None:
    """Percentile interval of the finite values, or None when there are none."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(values, [tail, 100.0 - tail])
    return [float(lo), float(hi)]


def bootstrap_intervals(
    labels,
    scores,
    threshold: float,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Percentile-bootstrap confidence intervals for accuracy and ROC-AUC.

    Images are resampled with replacement. Resamples that lack one class are skipped for AUC
    only; if none has both classes the AUC interval is None. Deterministic for a given seed.
    Returns ``{"accuracy": [lo, hi], "roc_auc": [lo, hi] | None}``.
    """
    y, s = _validate(labels, scores)
    t = _check_threshold(threshold)
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples!r}")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1, got {level!r}")
    unique, rank = np.unique(s, return_inverse=True)
    keys = 2 * rank.ravel() + y
    correct = ((s >= t).astype(np.int64) == y).astype(np.float64)
    rng = np.random.default_rng(seed)
    accuracies, aucs = [], []
    for start in range(0, int(n_resamples), _BOOTSTRAP_BLOCK):
        size = min(_BOOTSTRAP_BLOCK, int(n_resamples) - start)
        acc, auc = _bootstrap_block(keys, correct, unique.size, rng, size)
        accuracies.append(acc)
        aucs.append(auc)
    return {
        "accuracy": _percentile_interval(np.concatenate(accuracies), level),
        "roc_auc": _percentile_interval(np.concatenate(aucs), level),
    }


def _per_class(y: np.ndarray, pred: np.ndarray) -> tuple[dict, dict]:
    """Per-class and macro precision/recall/F1; undefined values are 0.0 (zero_division=0)."""
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=[0, 1], zero_division=0
    )
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(CLASS_NAMES)
    }
    macro = {
        "precision": float(np.mean(precision)),
        "recall": float(np.mean(recall)),
        "f1": float(np.mean(f1)),
    }
    return per_class, macro


def _balanced_accuracy(matrix: np.ndarray) -> float:
    """Mean recall over the classes present (with one class it is that class's recall)."""
    support = matrix.sum(axis=1)
    present = support > 0
    recalls = np.diag(matrix)[present] / support[present]
    return float(recalls.mean())


def _ranking_metrics(y: np.ndarray, s: np.ndarray) -> dict:
    """Threshold-free metrics; all None when one class is missing."""
    if not _has_both_classes(y):
        return {"roc_auc": None, "average_precision": None, "eer": None, "tpr_at_1pct_fpr": None}
    return {
        "roc_auc": float(roc_auc_score(y, s)),
        "average_precision": float(average_precision_score(y, s)),
        "eer": equal_error_rate(y, s),
        "tpr_at_1pct_fpr": tpr_at_fpr(y, s, fpr=0.01),
    }


def compute_metrics(
    labels, scores, threshold: float = 0.5, *, n_bootstrap: int = 1000, seed: int = 0
) -> dict:
    """All evaluation metrics as a JSON-ready dict (see the module docstring for conventions).

    ``n_bootstrap=0`` skips the bootstrap; the intervals are then None.
    """
    y, s = _validate(labels, scores)
    t = _check_threshold(threshold)
    pred = (s >= t).astype(np.int64)
    matrix = confusion_matrix(y, pred, labels=[0, 1])
    per_class, macro = _per_class(y, pred)
    level = 0.95
    if n_bootstrap > 0:
        intervals = bootstrap_intervals(y, s, t, n_resamples=n_bootstrap, seed=seed, level=level)
    else:
        intervals = {"accuracy": None, "roc_auc": None}
    return {
        "n_images": int(y.size),
        "n_real": int((y == 0).sum()),
        "n_fake": int((y == 1).sum()),
        "threshold": t,
        "loss": binary_cross_entropy(y, s),
        "accuracy": float((pred == y).mean()),
        "balanced_accuracy": _balanced_accuracy(matrix),
        "per_class": per_class,
        "macro": macro,
        **_ranking_metrics(y, s),
        "confusion_matrix": matrix.astype(int).tolist(),
        "intervals": {**intervals, "level": level, "n_resamples": int(n_bootstrap)},
    }


def classification_report_text(labels, scores, threshold: float) -> str:
    """scikit-learn's text classification report at ``threshold`` (classes real/fake)."""
    y, s = _validate(labels, scores)
    pred = (s >= _check_threshold(threshold)).astype(np.int64)
    return classification_report(
        y, pred, labels=[0, 1], target_names=list(CLASS_NAMES), zero_division=0, digits=4
    )


def _fmt(value: float | None) -> str:
    """Four decimals, or 'n/a' for undefined values."""
    return "n/a" if value is None else f"{value:.4f}"


def _fmt_with_interval(value: float | None, interval: Sequence[float] | None) -> str:
    """Value followed by its confidence interval when one is available."""
    if value is None or not interval:
        return _fmt(value)
    return f"{_fmt(value)}  [{_fmt(interval[0])}, {_fmt(interval[1])}]"


def format_summary_table(metrics: dict) -> str:
    """Short aligned plain-text summary of a :func:`compute_metrics` dict for the terminal."""
    intervals = metrics.get("intervals") or {}
    level = intervals.get("level")
    ci = (
        f" ({level:.0%} CI)"
        if level and (intervals.get("accuracy") or intervals.get("roc_auc"))
        else ""
    )
    rows = [
        (
            "images",
            f"{metrics.get('n_images', 'n/a')} "
            f"(real {metrics.get('n_real', 'n/a')}, fake {metrics.get('n_fake', 'n/a')})",
        ),
        ("threshold", _fmt(metrics.get("threshold"))),
        ("accuracy" + ci, _fmt_with_interval(metrics.get("accuracy"), intervals.get("accuracy"))),
        ("balanced accuracy", _fmt(metrics.get("balanced_accuracy"))),
        ("ROC-AUC" + ci, _fmt_with_interval(metrics.get("roc_auc"), intervals.get("roc_auc"))),
        ("average precision", _fmt(metrics.get("average_precision"))),
        ("EER", _fmt(metrics.get("eer"))),
        ("TPR @ 1% FPR", _fmt(metrics.get("tpr_at_1pct_fpr"))),
        ("loss (BCE)", _fmt(metrics.get("loss"))),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines += ["", _per_class_table(metrics.get("per_class") or {})]
    return "\n".join(lines)


def _per_class_table(per_class: dict) -> str:
    """Rows of precision/recall/F1/support, one per class."""
    header = f"{'class':<6}  {'precision':>9}  {'recall':>9}  {'f1':>9}  {'support':>8}"
    lines = [header]
    for name in CLASS_NAMES:
        row = per_class.get(name) or {}
        support = row.get("support")
        lines.append(
            f"{name:<6}  {_fmt(row.get('precision')):>9}  {_fmt(row.get('recall')):>9}  "
            f"{_fmt(row.get('f1')):>9}  {'n/a' if support is None else support:>8}"
        )
    return "\n".join(lines)
