"""Compare two models image by image: per-source ROC-AUC difference with a paired bootstrap.

    python scripts/compare_models.py runs/F runs/B --data ../shared/data --split valid

Both models score the same images of one split of a split manifest (default: the bundled
model's), re-encoded to JPEG quality 75 as in every measurement of the bundled model. Each
bootstrap resample draws images with replacement within a source and scores both models on the
same draw, so the interval is that of the difference, much narrower than two separate intervals.
An interval that excludes 0 is how docs/experiments.md decides that one model is better on a source.
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
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    p.add_argument("--manifest", type=Path, default=BUNDLED_DIR / MANIFEST_NAME)
    p.add_argument("--jpeg-quality", type=int, default=75)
    p.add_argument(
        "--scale", type=float, default=1.0,
        help="resize every image by this factor (bicubic) before re-encoding it",
    )  # fmt: skip
    args = p.parse_args(argv)

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
    for source in sorted(set(sources)):
        mask = sources == source
        diff, low, high = paired_auc_difference(labels[mask], scores[0][mask], scores[1][mask])
        print(f"  {source:20s} {mask.sum():5d} images  {diff:+.4f} [{low:+.4f}, {high:+.4f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
