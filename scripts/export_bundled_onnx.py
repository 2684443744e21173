"""Build the bundled model's int8 ONNX file and measure it against fp32 on the held-out split.

Calibration uses 256 training images of the bundled split manifest (balanced by class, seeded);
the export's check uses the validation images; the held-out (test) images only measure the
result: ROC-AUC of fp32 and int8 ONNX (with bootstrap intervals), and the share of labels that
int8 changes, on the images as they are and re-encoded as JPEG quality 75.

    python scripts/export_bundled_onnx.py --data ../shared/data [--json report.json]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
from pathlib import Path

import numpy as np

from deepfake_detect.data.images import load_image
from deepfake_detect.evaluation.metrics import compute_metrics
from deepfake_detect.inference import BUNDLED_DIR, load_detector
from deepfake_detect.inference.export import export_onnx
from deepfake_detect.inference.onnx_files import ONNX_NAMES


def manifest_split(data: Path, split: str) -> list[tuple[Path, int]]:
    with open(BUNDLED_DIR / "split_manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    return [(data / r["path"], int(r["label"] == "fake")) for r in rows]


def calibration_images(data: Path, n: int = 256, seed: int = 0) -> list[Path]:
    rows = manifest_split(data, "train")
    rng = random.Random(seed)
    by_class = [[p for p, label in rows if label == c] for c in (0, 1)]
    return sorted(p for group in by_class for p in rng.sample(group, n // 2))


def q75(path: Path) -> bytes:
    buffer = io.BytesIO()
    load_image(path).save(buffer, "JPEG", quality=75)
    return buffer.getvalue()


def measure(data: Path) -> dict:
    test = manifest_split(data, "test")
    labels = np.array([label for _, label in test])
    out = {}
    detectors = {p: load_detector(precision=p) for p in ("fp32", "int8")}
    threshold = detectors["fp32"].threshold
    for variant in ("as-is", "jpeg-q75"):
        inputs = [p for p, _ in test] if variant == "as-is" else [q75(p) for p, _ in test]
        scores = {
            name: np.array([p.score for p in d.score(inputs, batch_size=64)])
            for name, d in detectors.items()
        }
        flipped = float(np.mean((scores["fp32"] >= threshold) != (scores["int8"] >= threshold)))
        out[variant] = {
            "n_images": len(test),
            "labels_changed": flipped,
            **{
                name: summary(compute_metrics(labels, s, threshold))
                for name, s in scores.items()
            },
        }
        out[variant]["roc_auc_difference"] = out[variant]["int8"]["roc_auc"] - out[variant][
            "fp32"
        ]["roc_auc"]
    return out


def summary(metrics: dict) -> dict:
    intervals = metrics["intervals"]
    return {
        "roc_auc": metrics["roc_auc"], "roc_auc_interval": intervals["roc_auc"],
        "accuracy": metrics["accuracy"], "accuracy_interval": intervals["accuracy"],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--calibration", default="MinMax", help="MinMax, Percentile or Entropy")
    args = parser.parse_args()
    valid = [p for p, _ in manifest_split(args.data, "valid")]
    report = export_onnx(
        BUNDLED_DIR, BUNDLED_DIR / ONNX_NAMES["int8"], precision="int8",
        images=calibration_images(args.data), check_images=valid, calibration=args.calibration,
    )  # fmt: skip
    result = {"export_check_on_validation": report.to_dict(), "heldout": measure(args.data)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
