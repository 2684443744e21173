"""How steady is each rule for choosing a model's threshold? (docs/experiments.md, "A steadier
threshold rule").

    python scripts/threshold_rules.py docs/scores/candidate-e-valid-q75.csv \\
        docs/scores/candidate-e-seed1-valid-q75.csv

For each per-image score file that `evaluate` wrote (path, source, label, score: calibrated
validation scores), and each rule:

- the threshold the rule chooses on all the images;
- its spread: the images are resampled with replacement within each (source, class) stratum,
  the rule chooses a threshold on each resample, and that threshold's false-alarm rate (reals
  called fake) and missed-fake rate are counted on the full set; the spread is the width of the
  95% interval of the first plus that of the second;
- the balanced accuracy on all the images at the rule's threshold.

The rules: `max-balanced` (the trainer's: maximum balanced accuracy), `recalibrated` (a
class-balanced logistic fit a z + b on z = logit(score); the threshold where it gives 1/2;
the trainer's default since this comparison) and
`equal-error` (where the false-alarm rate meets the missed-fake rate).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from deepfake_detect.evaluation.metrics import choose_threshold, recalibrated_threshold


def equal_error_threshold(labels, scores) -> float:
    """The score at which the share of reals at or above it is closest to the share of fakes
    below it (of equally close ones, the one nearest 0.5)."""
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    real, fake = np.sort(s[y == 0]), np.sort(s[y == 1])
    candidates = np.unique(s)
    false_alarm = 1.0 - np.searchsorted(real, candidates, side="left") / real.size
    missed = np.searchsorted(fake, candidates, side="left") / fake.size
    gap = np.abs(false_alarm - missed)
    best = np.flatnonzero(gap <= gap.min() + 1e-12)
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


RULES: dict[str, Callable] = {
    "max-balanced": choose_threshold,
    "recalibrated": recalibrated_threshold,
    "equal-error": equal_error_threshold,
}


def rates(labels, scores, threshold: float) -> tuple[float, float]:
    """(false-alarm rate, missed-fake rate) at a threshold (score >= threshold is fake)."""
    y, s = np.asarray(labels), np.asarray(scores)
    return float(np.mean(s[y == 0] >= threshold)), float(np.mean(s[y == 1] < threshold))


def spread(labels, sources, scores, rule: Callable, n_resamples=2000, seed=0) -> dict:
    """The rule's thresholds on stratified bootstrap resamples, judged on the full set."""
    rng = np.random.default_rng(seed)
    strata = [np.flatnonzero((sources == src) & (labels == c))
              for src in np.unique(sources) for c in (0, 1)]  # fmt: skip
    strata = [s for s in strata if s.size]
    alarms, misses, thresholds = [], [], []
    for _ in range(n_resamples):
        pick = np.concatenate([rng.choice(s, s.size) for s in strata])
        t = rule(labels[pick], scores[pick])
        fa, miss = rates(labels, scores, t)
        alarms.append(fa)
        misses.append(miss)
        thresholds.append(t)

    def interval(values):
        return [float(v) for v in np.percentile(values, [2.5, 97.5])]

    fa_iv, miss_iv = interval(alarms), interval(misses)
    return {
        "threshold_interval": interval(thresholds),
        "false_alarm_interval": fa_iv,
        "missed_interval": miss_iv,
        "spread": (fa_iv[1] - fa_iv[0]) + (miss_iv[1] - miss_iv[0]),
    }


def read_scores(path: Path):
    """(labels, sources, scores) of a scores.csv file."""
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None
    if not rows or not {"source", "label", "score"} <= set(rows[0]):
        raise ValueError(f"{path}: not a scores file (path, source, label, score)")
    try:
        scores = np.array([float(r["score"]) for r in rows])
        labels = np.array([int(r["label"]) for r in rows])
    except ValueError:
        raise ValueError(f"{path}: a row without a label or score") from None
    if set(np.unique(labels)) != {0, 1}:
        raise ValueError(f"{path}: needs real (0) and fake (1) images")
    return labels, np.array([r["source"] for r in rows]), scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scores", nargs="+", type=Path, help="scores.csv files (validation)")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.resamples < 10:
        parser.error("--resamples must be at least 10")
    try:  # every file read before any row is printed
        tables = {path: read_scores(path) for path in args.scores}
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("| scores | rule | threshold | threshold, 95% of resamples | reals called fake "
          "(resampled) | fakes missed (resampled) | spread | balanced accuracy |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for path, (labels, sources, scores) in tables.items():
        for name, rule in RULES.items():
            t = rule(labels, scores)
            fa, miss = rates(labels, scores, t)
            s = spread(labels, sources, scores, rule, args.resamples, args.seed)
            ti, fi, mi = s["threshold_interval"], s["false_alarm_interval"], s["missed_interval"]
            print(f"| {path.name} | {name} | {t:.3f} | [{ti[0]:.3f}, {ti[1]:.3f}] "
                  f"| {fa:.1%} [{fi[0]:.1%}, {fi[1]:.1%}] | {miss:.1%} [{mi[0]:.1%}, {mi[1]:.1%}] "
                  f"| {s['spread']:.3f} | {1 - (fa + miss) / 2:.4f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
