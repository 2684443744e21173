"""The learning curve's table and plot from its runs' evaluations.

    python scripts/learning_curve_report.py RUN [RUN ...] \
        --sources faces140k-sample,faces140k-extra --plot docs/learning_curve.png

Each RUN is a run folder that `scripts/train_learning_curve.sh` trained and evaluated: it holds
eval-valid-q75/metrics.json and eval-test-q75/metrics.json. The curve's x is the number of
faces140k-like training images (those of the --like sources): counted in the run's split.csv,
less what its --source-train-size left out. Prints a Markdown table (per source: validation and
held-out ROC-AUC with 95% bootstrap intervals); --plot draws 1 - validation ROC-AUC per source.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

LIKE = ("faces140k-sample", "faces140k-extra")


def training_images(run: Path, like: tuple[str, ...]) -> int:
    """The run's faces140k-like training images, after --source-train-size."""
    from deepfake_detect.data.datasets import SPLIT_NAME, read_split_csv
    from deepfake_detect.training.options import parse_source_sizes

    options = json.loads((run / "options.json").read_text())
    sizes = dict(parse_source_sizes(options.get("source_train_size") or []))
    counts = {s: 0 for s in like}
    for record in read_split_csv(run / SPLIT_NAME):
        if record.split == "train" and record.source in counts:
            counts[record.source] += 1
    return sum(min(counts[s], sizes.get(s, counts[s])) for s in like)


def point(run: Path, like: tuple[str, ...], sources: list[str]) -> dict:
    out = {"run": str(run), "n": training_images(run, like)}
    for split in ("valid", "test"):
        path = run / f"eval-{split}-q75" / "metrics.json"
        if not path.is_file():
            raise ValueError(f"{run}: no {path.relative_to(run)} (run the evaluations first)")
        per_source = json.loads(path.read_text())["per_source"]
        for source in sources:
            if source not in per_source:
                raise ValueError(f"{path}: no source {source}")
            m = per_source[source]
            out[f"{split}/{source}"] = (m["roc_auc"], m["intervals"]["roc_auc"])
    return out


def _cell(value) -> str:
    auc, interval = value
    return f"{auc:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else f"{auc:.3f}"


def format_table(points: list[dict], sources: list[str]) -> str:
    head = ["faces140k-like training images"]
    head += [f"{split} ROC-AUC, {s}" for split in ("validation", "held-out") for s in sources]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for p in sorted(points, key=lambda p: p["n"]):
        cells = [f"{p['n']:,}"]
        cells += [_cell(p[f"{split}/{s}"]) for split in ("valid", "test") for s in sources]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--sources", default=",".join(LIKE), help="sources to report, comma-separated")
    p.add_argument("--like", default=",".join(LIKE), help="sources the curve's x counts")
    p.add_argument("--plot", type=Path)
    args = p.parse_args(argv)
    sources = [s for s in args.sources.split(",") if s]
    like = tuple(s for s in args.like.split(",") if s)
    try:
        points = [point(run, like, sources) for run in args.runs]
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(points, sources))
    if args.plot is not None:
        from deepfake_detect.evaluation.plots import plot_learning_curve

        curves = {s: [(p["n"], *p[f"valid/{s}"]) for p in points] for s in sources}
        plot_learning_curve(curves, args.plot, xlabel="faces140k-like training images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
