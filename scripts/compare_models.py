"""Compare two models image by image: per-source ROC-AUC difference with a paired bootstrap.

    python scripts/compare_models.py runs/F runs/B --data ../shared/data --split valid

Both models score the same images of one split of a split manifest (default: the bundled
model's), re-encoded to JPEG quality 75 as in every measurement of the bundled model. Each
bootstrap resample draws images with replacement within a source and scores both models on the
same draw, so the interval is that of the difference, much narrower than two separate intervals.
An interval that excludes 0 is how docs/experiments.md decides that one model is better on a source.

    python scripts/compare_models.py --from-scores docs/scores/A.csv docs/scores/B.csv

pairs two per-image score files that `evaluate` wrote (scores.csv: path, source, label, score)
instead, so that runs whose weights are gone can still be compared image by image; both files
must hold the same images with the same labels. With `--thresholds TA TB` (each model's own
threshold) it also prints, per source, the share of real photos called fake by A minus B's, with
its paired bootstrap interval. With `--mean-logit TA TB` (each model's temperature) it also
prints what a two-member ensemble would buy: the ROC-AUC of the two models' mean logit (each
score turned back into its logit, temperature times logit(score)) minus A's, paired.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from deepfake_detect.evaluation.comparison import paired_auc_difference


def main(argv: list[str] | None = None) -> int:
    from deepfake_detect.errors import DetectorError

    try:
        return compare(argv)
    except (DetectorError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def compare(argv: list[str] | None) -> int:
    from deepfake_detect.data.datasets import ImageRecord
    from deepfake_detect.data.manifest import MANIFEST_NAME, read_manifest
    from deepfake_detect.evaluation.runs import score_records
    from deepfake_detect.inference.detector import BUNDLED_DIR, load_detector

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_a")
    p.add_argument("model_b")
    p.add_argument(
        "--from-scores", action="store_true",
        help="MODEL_A and MODEL_B are scores.csv files of evaluate: pair them, score nothing",
    )  # fmt: skip
    p.add_argument("--thresholds", type=float, nargs=2, metavar=("TA", "TB"),
                   help="with --from-scores: also compare false alarms at these thresholds")
    p.add_argument("--mean-logit", type=float, nargs=2, metavar=("TA", "TB"),
                   help="with --from-scores: also the mean logit of both (their temperatures) "
                   "against A")
    p.add_argument("--data", type=Path)
    p.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    p.add_argument("--manifest", type=Path, default=BUNDLED_DIR / MANIFEST_NAME)
    p.add_argument("--jpeg-quality", type=int, default=75)
    p.add_argument(
        "--scale", type=float, default=1.0,
        help="resize every image by this factor (bicubic) before re-encoding it",
    )  # fmt: skip
    args = p.parse_args(argv)

    if args.from_scores:
        labels, sources, scores = read_paired_scores(Path(args.model_a), Path(args.model_b))
        print(f"ROC-AUC({args.model_a}) - ROC-AUC({args.model_b}), the images of both files:")
        print_differences(labels, sources, scores)
        if args.thresholds:
            print_false_alarm_differences(labels, sources, scores, *args.thresholds)
        if args.mean_logit:
            print(f"ROC-AUC(mean logit of both) - ROC-AUC({args.model_a}):")
            print_differences(labels, sources, [mean_logit(scores, args.mean_logit), scores[0]])
        return 0
    if args.thresholds or args.mean_logit:
        raise ValueError("--thresholds and --mean-logit go with --from-scores")
    if args.data is None:
        raise ValueError("--data is needed unless --from-scores is given")
    if not 0.1 <= args.scale <= 4.0:
        raise ValueError(f"--scale must be within 0.1-4, got {args.scale:g}")
    if not args.data.is_dir():
        raise ValueError(f"{args.data}: no such data folder")
    rows = [r for r in read_manifest(args.manifest) if r.split == args.split]
    if not rows:
        raise ValueError(f"{args.manifest}: no images in the {args.split} split")
    records = [ImageRecord(args.data / r.path, r.label, r.source, r.group) for r in rows]
    labels = np.array([r.label for r in rows])
    sources = np.array([r.source for r in rows])
    scores = []
    for model in (args.model_a, args.model_b):
        predictions = score_records(
            load_detector(model), records, jpeg_quality=args.jpeg_quality, scale=args.scale
        )
        failed = [p for p in predictions if p.error is not None]
        if failed:
            raise SystemExit(
                f"error: {len(failed)} image(s) could not be scored, first: {failed[0].error}"
            )
        scores.append(np.array([p.score for p in predictions]))
    where = f"{args.split} split, JPEG quality {args.jpeg_quality}"
    where += f", resized {args.scale:g}x first" if args.scale != 1.0 else ""
    print(f"ROC-AUC({args.model_a}) - ROC-AUC({args.model_b}), {where}:")
    print_differences(labels, sources, scores)
    return 0


def mean_logit(scores, temperatures) -> np.ndarray:
    """The mean of the models' logits, each score p turned back into T * log(p / (1 - p)) (the
    scores files keep 8 decimals: p is clipped to 1e-8 from 0 and 1), as a score in (0, 1)
    that ranks the images as the mean logit does (uncalibrated)."""
    if min(temperatures) <= 0:
        raise ValueError(f"temperatures must be positive, got {temperatures}")
    logits = []
    for p, t in zip(scores, temperatures, strict=True):
        p = np.clip(np.asarray(p, dtype=np.float64), 1e-8, 1 - 1e-8)
        logits.append(t * np.log(p / (1 - p)))
    return 1 / (1 + np.exp(-np.mean(logits, axis=0)))


def print_differences(labels, sources, scores) -> None:
    for source in sorted(set(sources)):
        mask = sources == source
        diff, low, high = paired_auc_difference(labels[mask], scores[0][mask], scores[1][mask])
        print(f"  {source:20s} {mask.sum():5d} images  {diff:+.4f} [{low:+.4f}, {high:+.4f}]")


def print_false_alarm_differences(labels, sources, scores, threshold_a, threshold_b) -> None:
    from deepfake_detect.evaluation.comparison import bootstrap_interval

    def difference(y, a, b):
        real = y == 0
        return float(np.mean(a[real] >= threshold_a) - np.mean(b[real] >= threshold_b))

    print(f"reals called fake, A at {threshold_a:g} minus B at {threshold_b:g}:")
    for source in sorted(set(sources)):
        mask = sources == source
        y, a, b = labels[mask], scores[0][mask], scores[1][mask]
        low, high = bootstrap_interval(difference, y, a, b, n_resamples=2000)
        rate_a, rate_b = np.mean(a[y == 0] >= threshold_a), np.mean(b[y == 0] >= threshold_b)
        print(f"  {source:20s} {(y == 0).sum():5d} reals  {100 * rate_a:.1f}% - {100 * rate_b:.1f}%"
              f" = {100 * (rate_a - rate_b):+.1f} [{100 * low:+.1f}, {100 * high:+.1f}] points")


def read_paired_scores(path_a: Path, path_b: Path):
    """(labels, sources, [scores_a, scores_b]) of two scores.csv files, in A's order; the files
    must hold the same images (by path) with the same labels and sources, each scored."""
    import csv

    tables = []
    for path in (path_a, path_b):
        try:
            with path.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: unreadable ({exc})") from None
        if not rows or not {"path", "source", "label", "score"} <= set(rows[0]):
            raise ValueError(f"{path}: not a scores file (path, source, label, score)")
        table = {}
        for row in rows:
            if row["path"] in table:
                raise ValueError(f"{path}: {row['path']} is listed twice")
            try:
                table[row["path"]] = (row["source"], int(row["label"]), float(row["score"]))
            except ValueError:
                raise ValueError(f"{path}: {row['path']} has no score (label {row['label']!r}, "
                                 f"score {row['score']!r})") from None  # fmt: skip
        tables.append(table)
    a, b = tables
    if a.keys() != b.keys():
        only = sorted(a.keys() ^ b.keys())
        raise ValueError(f"the two files hold different images ({len(only)} in one only, "
                         f"first: {only[0]})")  # fmt: skip
    for key in a:
        if a[key][:2] != b[key][:2]:
            raise ValueError(f"{key}: the files disagree about its source or label")
    labels = np.array([a[k][1] for k in a])
    sources = np.array([a[k][0] for k in a])
    return labels, sources, [np.array([a[k][2] for k in a]), np.array([b[k][2] for k in a])]


if __name__ == "__main__":
    sys.exit(main())
