"""Does letting the engine's lanes stack their own images speed up the pipeline? (issue 14)

Alternates, in one process, `iter_scores` as it is (each batch handed to the engine as a list
of images, which each lane puts together for its own calls of one or two) and as it was (the
main thread stacking the whole batch of 32 first), then the default engine alone on a stacked
batch, for `--rounds` rounds; prints each round and the best of each, and the pipeline's
ratio to the engine alone both ways.

    python scripts/stack_ab.py --images ../shared/data/faces140k-sample [--rounds 4]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from deepfake_detect import load_detector
from deepfake_detect.inference import detector as det
from deepfake_detect.inference.inputs import expand_paths


def stacking_first(self, chunk, loaded, offset, threshold):
    """`Detector._score_chunk` before the change: one np.stack of the batch in this thread."""
    arrays = [a for x in loaded if not isinstance(x, str) for a in x.arrays]
    scores = iter(self.score_arrays(np.stack(arrays)) if arrays else [])
    for i, item in enumerate(chunk):
        name, x = det.describe_input(item, offset + i), loaded[i]
        if isinstance(x, str):
            yield det.Prediction(name, None, None, x)
            continue
        yield x.prediction(name, scores, threshold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--files", type=int, default=1536)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    files = expand_paths([args.images])
    files = (files * (args.files // len(files) + 1))[: args.files]
    detector = load_detector()
    batch = np.stack([detector.preprocess(f) for f in files[:256]])
    list(detector.iter_scores(files[:64]))  # warm up
    variants = {"lanes stack": det.Detector._score_chunk, "stacking first": stacking_first}
    rates: dict[str, list[float]] = {name: [] for name in [*variants, "engine alone"]}
    for _ in range(args.rounds):
        for name, method in variants.items():
            det.Detector._score_chunk = method
            start = time.perf_counter()
            count = sum(1 for _ in detector.iter_scores(files))
            rates[name].append(count / (time.perf_counter() - start))
        start = time.perf_counter()
        for _ in range(4):
            detector.engine.logits(batch)
        rates["engine alone"].append(4 * len(batch) / (time.perf_counter() - start))
        print("  ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items()), flush=True)
    best = {name: max(values) for name, values in rates.items()}
    print(f"best, images/s ({detector.engine.precision}):",
          "  ".join(f"{k} {v:.1f}" for k, v in best.items()))  # fmt: skip
    for name in variants:
        print(f"pipeline / engine alone, {name}: {best[name] / best['engine alone']:.3f}")


if __name__ == "__main__":
    main()
