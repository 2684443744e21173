"""What an everyday change does to a model: fakes caught and real photos called fake, per change.

    python scripts/everyday_changes.py --data ../shared/data --split test \
        --model bundled --model runs/new [--changes none,rotate-5,...] [--json out.json]

Every image of one split of a split manifest (default: the bundled model's, whose held-out
images both editions keep held out) goes through each change the issue names (resized to 128
px, rotated 5 degrees, the centre 80% kept, blurred, re-saved at JPEG 50 or 30; `--changes`
picks any of `EVERYDAY_CHANGES`, the framing changes among them: shrunk to 0.8 or 0.65 of each
side, the centre 0.65 kept) and is saved as JPEG, then scored by each model at its own shipped
threshold. Printed as a Markdown table with 95% Wilson intervals; `--json` also writes every
figure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    return reported(run, argv)


def reported(run, argv: list[str] | None) -> int:
    """A script's `run(argv)`, with a bad model, folder or file as one line on stderr (exit 2)."""
    from deepfake_detect.errors import DetectorError

    try:
        return run(argv)
    except (DetectorError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def sample_arguments(parser: argparse.ArgumentParser, split: str, limit: int = 0) -> None:
    """--data, --model, --manifest, --split, --limit and --seed: what `sampled` draws from."""
    from deepfake_detect.data.manifest import MANIFEST_NAME
    from deepfake_detect.inference import BUNDLED_DIR

    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--model", default=None, help="default: the bundled model")
    parser.add_argument("--manifest", type=Path, default=BUNDLED_DIR / MANIFEST_NAME)
    parser.add_argument("--split", default=split, choices=("train", "valid", "test"))
    parser.add_argument("--limit", type=int, default=limit, help="a seeded sample of N (0: all)")
    parser.add_argument("--seed", type=int, default=0)


def sampled(args, rng) -> list:
    """The records of `args.split` in `args.manifest`, a sample of `args.limit` drawn by `rng`."""
    if args.limit < 0:
        raise ValueError(f"--limit must be 0 (all) or more, got {args.limit}")
    records = manifest_records(args.manifest, args.data, args.split)
    return rng.sample(records, min(args.limit, len(records))) if args.limit else records


def parse(argv: list[str] | None):
    from deepfake_detect.data.manifest import MANIFEST_NAME
    from deepfake_detect.data.transforms import ISSUE_CHANGES
    from deepfake_detect.inference import BUNDLED_DIR

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True,
                   help="model folder, or 'bundled'; repeatable")  # fmt: skip
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--manifest", type=Path, default=BUNDLED_DIR / MANIFEST_NAME)
    p.add_argument(
        "--changes",
        default=",".join(ISSUE_CHANGES),
        help="names of EVERYDAY_CHANGES, comma-separated (default: the issue's)",
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    args.changes = [c.strip() for c in args.changes.split(",") if c.strip()]
    return args


def manifest_records(manifest: Path, data: Path, split: str):
    from deepfake_detect.data.datasets import ImageRecord
    from deepfake_detect.data.manifest import read_manifest

    if not data.is_dir():
        raise ValueError(f"{data}: no such data folder")
    rows = [r for r in read_manifest(manifest) if r.split == split]
    if not rows:
        raise ValueError(f"{manifest}: no images in the {split} split")
    return [ImageRecord(data / r.path, r.label, r.source, r.group, r.split) for r in rows]


def change_rates(detector, records, change: str) -> dict:
    from deepfake_detect.evaluation.metrics import alarm_rates
    from deepfake_detect.evaluation.runs import score_records

    predictions = score_records(detector, records, change=change)
    failed = [p for p in predictions if p.score is None]
    if failed:
        raise ValueError(f"{len(failed)} image(s) could not be scored, first: {failed[0].error}")
    labels = np.array([r.label for r in records])
    scores = np.array([p.score for p in predictions])
    return alarm_rates(labels, scores, detector.threshold)


def run(argv: list[str] | None) -> int:
    from deepfake_detect.data.transforms import everyday_change
    from deepfake_detect.inference import load_detector

    args = parse(argv)
    for change in args.changes:
        everyday_change(change)  # a bad name fails before any scoring
    records = manifest_records(args.manifest, args.data, args.split)
    detectors = [load_detector(None if m == "bundled" else m) for m in args.model]
    figures = {
        model: {change: change_rates(d, records, change) for change in args.changes}
        for model, d in zip(args.model, detectors, strict=True)
    }
    print(format_table(figures, args.changes))
    if args.json is not None:
        from deepfake_detect.files import atomic_write_json

        atomic_write_json(args.json, {"split": args.split, "images": len(records), **figures})
    return 0


def _rate(rates: dict, name: str) -> str:
    value, interval = rates[name], rates[f"{name}_interval"]
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}% [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def format_table(figures: dict[str, dict[str, dict]], changes: list[str]) -> str:
    """change | per model: fakes caught, reals called fake."""
    head = ["change"]
    for model in figures:
        head += [f"{model}: fakes caught", f"{model}: reals called fake"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for change in changes:
        cells = [change]
        for model in figures:
            rates = figures[model][change]
            cells += [_rate(rates, "detection_rate"), _rate(rates, "false_alarm_rate")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
