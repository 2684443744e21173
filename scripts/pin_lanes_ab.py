"""Two lanes pinned to a CPU each against the same two lanes left to the scheduler.

The ONNX engine's lanes (`engines.OnnxEngine`) are threads the operating system may move
between CPUs, and each move leaves the lane's activations in the other CPU's L2. This script
measures whether pinning helps: two threads score one image per call on one shared session of
one thread each (as the lanes do), first unpinned, then each pinned to its own CPU with
`os.sched_setaffinity` (Linux: for the calling thread), in alternating pairs of windows so
that both see the same minutes of a shared host, and prints each pair, the median ratio and
how many pairs pinning won.

    python scripts/pin_lanes_ab.py [--model DIR] [--precision fp32|int8] [--pairs 8] [--seconds 4]
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np


def window(engine, image: np.ndarray, cpus: list[int], pin: bool, seconds: float) -> float:
    """Images/s of two threads calling `engine.logits(image)` for `seconds`."""
    counts = [0] * len(cpus)
    stop = time.perf_counter() + seconds

    def lane(k: int) -> None:
        if pin:
            os.sched_setaffinity(0, {cpus[k]})  # this thread only
        while time.perf_counter() < stop:
            engine.logits(image)
            counts[k] += 1

    threads = [threading.Thread(target=lane, args=(k,)) for k in range(len(cpus))]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


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
    if not hasattr(os, "sched_setaffinity"):
        raise SystemExit("error: this system cannot pin a thread to a CPU (Linux only)")
    cpus = sorted(os.sched_getaffinity(0))[:2]
    if len(cpus) < 2:
        raise SystemExit("error: two CPUs are needed")
    try:
        detector = load_detector(args.model, precision=args.precision)
    except (DetectorError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    engine = OnnxEngine(detector.engine.path, threads=1, lanes=1)
    size = detector.config.image_size
    image = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    window(engine, image, cpus, False, 1.0)  # warm-up
    ratios = []
    for pair in range(1, args.pairs + 1):
        free = window(engine, image, cpus, False, args.seconds)
        pinned = window(engine, image, cpus, True, args.seconds)
        ratios.append(pinned / free)
        print(f"{pair:2d}  unpinned {free:7.1f} images/s  pinned {pinned:7.1f}  "
              f"ratio {pinned / free:.3f}")  # fmt: skip
    wins = sum(r > 1 for r in ratios)
    print(f"median ratio {np.median(ratios):.3f}, pinned faster in {wins} of {len(ratios)} pairs")


if __name__ == "__main__":
    main()
