"""Evaluation metrics for the real-versus-fake classifier.

Conventions, shared with the rest of the package: label 0 is a real photograph, label 1 a
generated (fake) one, a score is the model's P(fake) in [0, 1], and an image is predicted fake
when ``score >= threshold``.

Everything returned by :func:`compute_metrics` is JSON-ready: python ``int``/``float``, lists,
and ``None`` for quantities that are undefined on the given data (never NaN), so a report can be
written with ``json.dumps(..., allow_nan=False)``.
"""

from __future__ import annotations

import math
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

# The figures bootstrap_intervals gives an interval for, in the order tables show them.
_INTERVAL_NAMES = ("accuracy", "roc_auc", "ece", "brier")

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


CALIBRATION_BINS = 15
"""Equal-width bins of P(fake) for the expected calibration error and the reliability diagram."""

# A validation split the model separates (almost) perfectly drives the fitted temperature
# towards 0, which saturates every score at 0 or 1 and loses the ranking: T stays >= 0.25.
_TEMPERATURE_RANGE = (0.25, 20.0)


def brier_score(labels, scores) -> float:
    """Mean squared difference between P(fake) and the label (0 is perfect, 0.25 is a coin)."""
    y, s = _validate(labels, scores)
    return float(np.mean((s - y) ** 2))


def reliability_bins(labels, scores, n_bins: int = CALIBRATION_BINS) -> list[dict]:
    """Per equal-width bin of P(fake): its edges, image count, mean score and share of fakes.

    A calibrated model's share of fakes in a bin equals its mean score; the last bin includes
    a score of exactly 1.
    """
    y, s = _validate(labels, scores)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = _calibration_bins(s, n_bins)
    bins = []
    for b in range(n_bins):
        inside = index == b
        count = int(inside.sum())
        bins.append({
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "count": count,
            "mean_score": float(s[inside].mean()) if count else None,
            "fraction_fake": float(y[inside].mean()) if count else None,
        })  # fmt: skip
    return bins


def _calibration_bins(scores: np.ndarray, n_bins: int) -> np.ndarray:
    """Each score's equal-width bin of P(fake), 0 to n_bins - 1 (a score of 1 in the last)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, n_bins - 1)


def expected_calibration_error(labels, scores, n_bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error: the count-weighted mean, over equal-width bins of P(fake),
    of |share of fakes - mean score| (the reliability diagram's gaps)."""
    y, _ = _validate(labels, scores)
    total = 0.0
    for b in reliability_bins(labels, scores, n_bins):
        if b["count"]:
            total += b["count"] * abs(b["fraction_fake"] - b["mean_score"])
    return float(total / y.size)


def ece_if_calibrated(
    scores, n_draws: int = 1000, seed: int = 0, n_bins: int = CALIBRATION_BINS
) -> list[float]:
    """The ECE that a perfectly calibrated model with these very scores would show on this
    many images, by chance alone: [mean, 95th percentile] over `n_draws` sets of labels drawn
    as each image's score says (label 1 with probability P(fake); Broecker and Smith's
    consistency resampling). An ECE within it is no evidence of miscalibration: on 259 images
    a calibrated model's ECE averaged 0.034, so a target of 0.03 cannot be told from chance
    there. Deterministic for a given seed."""
    _, s = _validate(np.zeros(np.shape(scores), dtype=np.int64), scores)  # the scores' checks
    if int(n_draws) < 1:
        raise ValueError(f"n_draws must be at least 1, got {n_draws!r}")
    bins = _calibration_bins(s, n_bins)
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, int(n_draws), _BOOTSTRAP_BLOCK):
        size = min(_BOOTSTRAP_BLOCK, int(n_draws) - start)
        gap = (rng.random((size, s.size)) < s) - s  # per image: drawn label - score
        cells = (bins + (np.arange(size) * n_bins)[:, None]).ravel()
        per_bin = np.bincount(cells, weights=gap.ravel(), minlength=size * n_bins)
        values.append(np.abs(per_bin.reshape(size, n_bins)).sum(axis=1) / s.size)
    values = np.concatenate(values)
    return [float(values.mean()), float(np.percentile(values, 95))]


def wilson_interval(successes: int, total: int, level: float = 0.95) -> list[float] | None:
    """Wilson score interval of a proportion (good near 0 and 1, where the normal one fails)."""
    from scipy.stats import norm

    if total <= 0:
        return None
    z = float(norm.ppf(0.5 + level / 2))
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == total else min(1.0, centre + half)
    return [low, high]


def alarm_rates(labels, scores, threshold: float) -> dict:
    """The share of real photos called fake (false alarms) and of fakes caught, each with its
    count and 95% Wilson interval; None for a class that is absent. The numbers a folder of
    real photos only (or of fakes only) is evaluated by."""
    y, s = _validate(labels, scores)
    fake = s >= _check_threshold(threshold)
    out = {}
    for name, label in (("false_alarm_rate", 0), ("detection_rate", 1)):
        n = int((y == label).sum())
        hits = int((fake & (y == label)).sum())
        out[name] = hits / n if n else None
        out[f"{name}_interval"] = wilson_interval(hits, n)
        out[f"{name}_count"] = [hits, n]
    return out


def fit_temperature(labels, logits) -> float:
    """Temperature T minimising the cross-entropy of sigmoid(logit / T) on these (validation)
    logits: T > 1 softens an over-confident model, T < 1 sharpens a timid one. It changes no
    ranking, so ROC-AUC and the best balanced accuracy stay as they are.

    With one class only, or logits that are all zero, nothing can be fitted and 1.0 is returned.
    T is kept within [0.25, 20]: below that, a (nearly) separable validation split would push
    the scores of other images to exactly 0 or 1.
    """
    from scipy.optimize import minimize_scalar

    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    if y.shape != z.shape or not np.isfinite(z).all():
        raise ValueError("labels and logits must be finite and of the same length")
    if not _has_both_classes(y.astype(np.int64)) or not np.any(z):
        return 1.0

    def loss(log_t: float) -> float:
        scaled = z / np.exp(log_t)
        # log(1 + e^x) - y x, computed stably: the mean cross-entropy on logits
        return float(np.mean(np.logaddexp(0.0, scaled) - y * scaled))

    low, high = np.log(_TEMPERATURE_RANGE)
    result = minimize_scalar(loss, bounds=(low, high), method="bounded")
    return float(np.exp(result.x))


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


# How a model's threshold is chosen on its validation scores (docs/experiments.md, "A steadier
# threshold rule"): the first is the default.
THRESHOLD_RULES = ("recalibrated", "max-balanced")

# Scores are clipped this far from 0 and 1 before they are turned back into logits.
_LOGIT_EPS = 1e-7


def recalibrated_threshold(labels, scores) -> float:
    """The threshold where a class-balanced logistic recalibration of these scores says 1/2.

    Fits a and b to minimise the log loss of sigmoid(a z + b), z = logit(score), each class
    weighing a half whatever its count; the threshold is sigmoid(-b / a), where a fake and a
    real image are equally likely by the fit. Every image moves it a little and none decides
    it, so it varies far less from one validation sample to another than the arg-max of
    balanced accuracy (`choose_threshold`), whose plateau one or two images can tip.

    Falls back to `choose_threshold` when the fit has no finite answer: the classes separate
    completely (any threshold between them is as good), or the scores rank fakes below reals.
    """
    from scipy.optimize import minimize

    y, s = _validate(labels, scores)
    if not _has_both_classes(y):
        return 0.5
    if s[y == 0].max() < s[y == 1].min():
        return choose_threshold(y, s)
    p = np.clip(s, _LOGIT_EPS, 1.0 - _LOGIT_EPS)
    z = np.log(p) - np.log1p(-p)
    weight = np.where(y == 1, 0.5 / np.sum(y == 1), 0.5 / np.sum(y == 0))

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        t = params[0] * z + params[1]
        gradient = weight * (0.5 * (1.0 + np.tanh(0.5 * t)) - y)  # sigmoid(t) - y, stably
        value = float(np.sum(weight * (np.logaddexp(0.0, t) - y * t)))
        return value, np.array([np.sum(gradient * z), np.sum(gradient)])

    fit = minimize(loss, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    a, b = fit.x
    if not (fit.success and np.isfinite(fit.x).all() and a > 0):
        return choose_threshold(y, s)
    return float(1.0 / (1.0 + np.exp(b / a)))


def select_threshold(labels, scores, rule: str = THRESHOLD_RULES[0]) -> float:
    """The threshold that `rule` (one of THRESHOLD_RULES) chooses on these validation scores."""
    if rule == "recalibrated":
        return recalibrated_threshold(labels, scores)
    if rule == "max-balanced":
        return choose_threshold(labels, scores)
    raise ValueError(f"unknown threshold rule {rule!r}: choose one of {', '.join(THRESHOLD_RULES)}")


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
    keys: np.ndarray,
    per_image: dict[str, np.ndarray],
    n_groups: int,
    rng: np.random.Generator,
    size: int,
) -> dict[str, np.ndarray]:
    """Accuracy, AUC (NaN where a class is absent), ECE and Brier score of ``size`` resamples.

    Each image has a key ``2 * rank_of_its_score + label``. Counting keys per resample gives,
    for every distinct score, how many reals and fakes were drawn; AUC then follows from
    cumulative sums (Mann-Whitney with ties counted half) without sorting each resample.
    ECE sums, per bin of P(fake), |fakes drawn - sum of their scores| over the resample (a
    bin's count times its gap), from per-bin sums of the same kind.
    """
    n = keys.size
    idx = rng.integers(0, n, size=(size, n))
    offsets = (np.arange(size) * 2 * n_groups)[:, None]
    counts = np.bincount((keys[idx] + offsets).ravel(), minlength=size * 2 * n_groups)
    counts = counts.reshape(size, n_groups, 2).astype(np.float64)
    real, fake = counts[..., 0], counts[..., 1]
    reals_below = np.cumsum(real, axis=1) - real
    wins = (fake * (reals_below + 0.5 * real)).sum(axis=1)
    pairs = real.sum(axis=1) * fake.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1.0), np.nan)
    cells = (per_image["bin"][idx] + (np.arange(size) * CALIBRATION_BINS)[:, None]).ravel()
    length = size * CALIBRATION_BINS
    gap = np.bincount(cells, weights=per_image["gap"][idx].ravel(), minlength=length)
    ece = np.abs(gap.reshape(size, CALIBRATION_BINS)).sum(axis=1) / n
    return {
        "accuracy": per_image["correct"][idx].mean(axis=1),
        "roc_auc": auc,
        "ece": ece,
        "brier": per_image["squared_error"][idx].mean(axis=1),
    }


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
    """Percentile-bootstrap confidence intervals for accuracy, ROC-AUC, ECE and Brier score.

    Images are resampled with replacement. Resamples that lack one class are skipped for AUC
    only; if none has both classes the AUC interval is None. ECE's bins are those of
    :func:`expected_calibration_error`; on a small set a resample's ECE tends to exceed the
    whole set's (sparse bins gap more), so its interval may sit above the point: read its
    upper end as how bad calibration may be. Deterministic for a given seed.
    Returns ``{"accuracy": [lo, hi], "roc_auc": [lo, hi] | None, "ece": [lo, hi],
    "brier": [lo, hi]}``.
    """
    y, s = _validate(labels, scores)
    t = _check_threshold(threshold)
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples!r}")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1, got {level!r}")
    unique, rank = np.unique(s, return_inverse=True)
    keys = 2 * rank.ravel() + y
    per_image = {
        "correct": ((s >= t).astype(np.int64) == y).astype(np.float64),
        "squared_error": (s - y) ** 2,
        "bin": _calibration_bins(s, CALIBRATION_BINS),
        "gap": y - s,
    }
    rng = np.random.default_rng(seed)
    blocks = []
    for start in range(0, int(n_resamples), _BOOTSTRAP_BLOCK):
        size = min(_BOOTSTRAP_BLOCK, int(n_resamples) - start)
        blocks.append(_bootstrap_block(keys, per_image, unique.size, rng, size))
    return {
        name: _percentile_interval(np.concatenate([b[name] for b in blocks]), level)
        for name in _INTERVAL_NAMES
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
        by_chance = ece_if_calibrated(s, n_draws=n_bootstrap, seed=seed)
    else:
        intervals, by_chance = dict.fromkeys(_INTERVAL_NAMES), None
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
        **alarm_rates(y, s, t),
        "ece": expected_calibration_error(y, s),
        "ece_if_calibrated": by_chance,
        "brier": brier_score(y, s),
        "calibration_bins": CALIBRATION_BINS,
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
        if level and any(intervals.get(name) for name in _INTERVAL_NAMES)
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
        ("reals called fake (95% CI)", _rate(metrics, "false_alarm_rate")),
        ("fakes caught (95% CI)", _rate(metrics, "detection_rate")),
        ("ROC-AUC" + ci, _fmt_with_interval(metrics.get("roc_auc"), intervals.get("roc_auc"))),
        ("average precision", _fmt(metrics.get("average_precision"))),
        ("EER", _fmt(metrics.get("eer"))),
        ("TPR @ 1% FPR", _fmt(metrics.get("tpr_at_1pct_fpr"))),
        ("loss (BCE)", _fmt(metrics.get("loss"))),
        (f"ECE ({metrics.get('calibration_bins', CALIBRATION_BINS)} bins)" + ci,
         _fmt_with_interval(metrics.get("ece"), intervals.get("ece"))),
        ("ECE by chance alone", _by_chance(metrics.get("ece_if_calibrated"))),
        ("Brier score" + ci, _fmt_with_interval(metrics.get("brier"), intervals.get("brier"))),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines += ["", _per_class_table(metrics.get("per_class") or {})]
    return "\n".join(lines)


def _by_chance(mean_and_high: Sequence[float] | None) -> str:
    """What a perfectly calibrated model's ECE would be on as many images: mean, 95th pct."""
    if not mean_and_high:
        return "n/a"
    return f"{_fmt(mean_and_high[0])}, up to {_fmt(mean_and_high[1])} (if calibrated; 95%)"


def _rate(metrics: dict, name: str) -> str:
    """A rate with its interval and counts, e.g. '0.0450  [0.0310, 0.0650]  (27 of 600)'."""
    value = metrics.get(name)
    if value is None:
        return "n/a"
    hits, total = metrics.get(f"{name}_count") or (None, None)
    counts = f"  ({hits} of {total})" if total else ""
    return _fmt_with_interval(value, metrics.get(f"{name}_interval")) + counts


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
