"""Diffusion faces, per generator: caught at the shipped threshold, and ROC-AUC against real
photos that went through the same processing history.

    python scripts/diffusion_report.py --model runs/new --split-from runs/new --split test \
        [--json out.json]

`--split-from` names the run (or model) folder whose split.csv holds both the real photos and
the fake-only diffusion faces (`train --fake-only`); its `--split` images are scored. The
diffusion faces are scored as they are; the real photos first get their history
(`transforms.FigureHistory`: resized to about 480 px, JPEG about 75, resized to 384 px, JPEG
75), so that the history tells neither class. A generator is the file name before its image id
(`FLUX1_dev_0000076.jpg`: FLUX1_dev). Intervals: 95% Wilson for rates, percentile bootstrap for
ROC-AUC.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

FAKE_ONLY_SOURCE = "diffusion-faces"


def main(argv: list[str] | None = None) -> int:
    from deepfake_detect.errors import DetectorError

    try:
        return run(argv)
    except (DetectorError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def generator_of(path: Path) -> str:
    """The name before the image id: FLUX1_dev_0000076.jpg is FLUX1_dev's."""
    generator, _, image_id = path.stem.rpartition("_")
    return generator if generator and image_id.isdigit() else "unknown"


def split_records(split_from: Path, split: str, source: str):
    """(diffusion faces, real photos) of the split, as the run's split.csv records them."""
    from deepfake_detect.data.datasets import SPLIT_NAME, read_split_csv, select

    path = split_from / SPLIT_NAME
    if not path.is_file():
        raise ValueError(f"{split_from}: no {SPLIT_NAME} (train with --fake-only first)")
    records = select(read_split_csv(path), split)
    fakes = [r for r in records if r.source == source]
    reals = [r for r in records if r.label == 0]
    if not fakes:
        raise ValueError(f"{path}: no {source} images in the {split} split")
    if not reals:
        raise ValueError(f"{path}: no real photos in the {split} split")
    return fakes, reals


def auc_with_interval(labels, scores, n_resamples=1000, seed=0):
    from deepfake_detect.evaluation.metrics import bootstrap_intervals, compute_metrics

    auc = compute_metrics(labels, scores, 0.5, n_bootstrap=0)["roc_auc"]
    interval = bootstrap_intervals(labels, scores, 0.5, n_resamples=n_resamples, seed=seed)
    return auc, interval["roc_auc"]


def report(fake_scores, generators, real_scores, threshold: float) -> dict:
    """Per generator and for all: caught at the threshold, ROC-AUC against every real photo."""
    from deepfake_detect.evaluation.metrics import alarm_rates

    real_scores = np.asarray(real_scores)
    out = {"real_photos_with_history": alarm_rates(np.zeros(len(real_scores)), real_scores,
                                                   threshold)}  # fmt: skip
    groups = {"all": np.ones(len(fake_scores), bool)}
    names = np.array(generators)
    groups |= {g: names == g for g in sorted(set(generators))}
    for name, mask in groups.items():
        fakes = np.asarray(fake_scores)[mask]
        labels = np.r_[np.ones(len(fakes)), np.zeros(len(real_scores))].astype(int)
        scores = np.r_[fakes, real_scores]
        auc, interval = auc_with_interval(labels, scores)
        rates = alarm_rates(np.ones(len(fakes), int), fakes, threshold)
        out[name] = {
            "n_images": int(mask.sum()),
            "caught": rates["detection_rate"],
            "caught_interval": rates["detection_rate_interval"],
            "roc_auc": auc,
            "roc_auc_interval": interval,
        }
    return out


def format_report(figures: dict, threshold: float) -> str:
    reals = figures["real_photos_with_history"]
    lines = [
        f"threshold {threshold:.4f}; real photos with the same history called fake: "
        f"{_pct(reals['false_alarm_rate'], reals['false_alarm_rate_interval'])} "
        f"of {reals['false_alarm_rate_count'][1]}",
        "| generator | images | caught | ROC-AUC against real photos with the same history |",
        "| --- | --- | --- | --- |",
    ]
    for name, g in figures.items():
        if name == "real_photos_with_history":
            continue
        low, high = g["roc_auc_interval"] or (float("nan"), float("nan"))
        lines.append(
            f"| {name} | {g['n_images']} | {_pct(g['caught'], g['caught_interval'])} | "
            f"{g['roc_auc']:.3f} [{low:.3f}, {high:.3f}] |"
        )
    return "\n".join(lines)


def _pct(value, interval) -> str:
    return f"{100 * value:.1f}% [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def run(argv: list[str] | None) -> int:
    from deepfake_detect.evaluation.runs import score_records
    from deepfake_detect.inference import load_detector

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model folder, or 'bundled'")
    p.add_argument("--split-from", type=Path, required=True)
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--source", default=FAKE_ONLY_SOURCE, help="the fake-only source's name")
    p.add_argument("--json", type=Path)
    p.add_argument("--engine", default="onnx", choices=("onnx", "torch"))
    p.add_argument("--device", default="auto", help="torch engine: auto, cpu or cuda")
    p.add_argument("--faces", default="off", choices=("off", "on", "auto"),
                   help="score both classes by their faces (deepfake-detect predict --faces)")
    args = p.parse_args(argv)
    fakes, reals = split_records(args.split_from, args.split, args.source)
    model = None if args.model == "bundled" else args.model
    detector = load_detector(model, args.device, engine=args.engine)
    fake_scores = _scores(score_records(detector, fakes, faces=args.faces))
    real_scores = _scores(score_records(detector, reals, history=True, faces=args.faces))
    figures = report(fake_scores, [generator_of(r.path) for r in fakes], real_scores,
                     detector.threshold)  # fmt: skip
    print(format_report(figures, detector.threshold))
    if args.json is not None:
        from deepfake_detect.files import atomic_write_json

        atomic_write_json(args.json, {"split": args.split, "threshold": detector.threshold,
                                      **figures})  # fmt: skip
    return 0


def _scores(predictions) -> np.ndarray:
    failed = [p for p in predictions if p.score is None]
    if failed:
        raise ValueError(f"{len(failed)} image(s) could not be scored, first: {failed[0].error}")
    return np.array([p.score for p in predictions])


if __name__ == "__main__":
    sys.exit(main())
