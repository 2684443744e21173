"""The ONNX engine with a lane per thread (the default) against one lane of all its threads.

`OnnxEngine` scores `lanes` images at once, each in a call of its own on `threads // lanes` of
ONNX Runtime's threads. This script measures the default (a lane per thread, one image per
call) against one lane (every thread on each call of `engines.ONNX_SUB_BATCH` images, spinning
during the call, as the engine ran before lanes), in alternating pairs of windows so that both
see the same minutes of a shared host, and prints each pair, the median ratio and how many
pairs the lanes won. Both engines score the same random batch; their logits are checked to
agree first.

    python scripts/lanes_ab.py [--model DIR] [--precision fp32|int8] [--pairs 8] [--seconds 4]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def rate(engine, batch: np.ndarray, seconds: float) -> float:
    """Images/s of `engine.logits(batch)` over at least `seconds`."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        engine.logits(batch)
        done += len(batch)
    return done / (time.perf_counter() - start)


def main() -> None:
    from deepfake_detect.errors import DetectorError
    from deepfake_detect.inference.detector import load_detector
    from deepfake_detect.inference.engines import OnnxEngine

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="a run folder (default: the bundled model)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "int8"))
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0, help="each window")
    args = parser.parse_args()
    if args.pairs < 1 or args.seconds <= 0:
        raise SystemExit("error: --pairs must be at least 1 and --seconds above 0")
    try:
        detector = load_detector(args.model, precision=args.precision)
    except (DetectorError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    lanes = detector.engine
    one_lane = OnnxEngine(lanes.path, lanes=1, spin=True)
    size = detector.config.image_size
    batch = np.random.default_rng(0).standard_normal((32, 3, size, size)).astype(np.float32)
    np.testing.assert_allclose(lanes.logits(batch), one_lane.logits(batch), atol=1e-3)
    print(f"{lanes.path.name}: {lanes.lanes} lanes of {lanes.sub_batch} image(s) per call "
          f"against one lane of {one_lane.sub_batch}")  # fmt: skip
    ratios = []
    for pair in range(1, args.pairs + 1):
        one, many = rate(one_lane, batch, args.seconds), rate(lanes, batch, args.seconds)
        ratios.append(many / one)
        print(f"{pair:2d}  one lane {one:7.1f} images/s  lanes {many:7.1f}  ratio {many / one:.3f}")
    wins = sum(r > 1 for r in ratios)
    print(f"median ratio {np.median(ratios):.3f}, lanes faster in {wins} of {len(ratios)} pairs")


if __name__ == "__main__":
    main()
