"""The ONNX engine with a lane per thread (the default) against one lane of all its threads,
or against the same lanes pinned to a CPU each.

`OnnxEngine` scores `lanes` images at once, each in a call of its own on `threads // lanes` of
ONNX Runtime's threads. By default this script measures the default (a lane per thread, one
image per call) against one lane (every thread on each call of `engines.ONNX_SUB_BATCH`
images, spinning during the call, as the engine ran before lanes). With `--against pinned` it
measures two lanes left to the scheduler against the same two lanes each pinned to its own CPU
with `os.sched_setaffinity` (Linux: for the calling thread), which keeps a lane's activations in
one core's L2. With `--against two-per-call` it measures the default lanes (one image per call,
`engines.ONNX_LANE_SUB_BATCH`) against the same lanes scoring two images per call. Each way in
alternating pairs of windows, so that both sides see the same minutes of a shared host, and it
prints each pair, the median ratio and how many pairs the second side won.

    python scripts/lanes_ab.py [--model DIR] [--precision fp32|int8]
                               [--against one-lane|pinned|two-per-call] [--pairs 8] [--seconds 4]
"""

from __future__ import annotations

import argparse
import functools
import os
import threading
import time

import numpy as np


def rate(engine, batch: np.ndarray, seconds: float) -> float:
    """Images/s of `engine.logits(batch)` over at least `seconds`."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        engine.logits(batch)
        done += len(batch)
    return done / (time.perf_counter() - start)


def lanes_rate(engine, image: np.ndarray, cpus: list[int], pin: bool, seconds: float) -> float:
    """Images/s of one thread per CPU of `cpus` calling `engine.logits(image)` for `seconds`,
    each pinned to its CPU when `pin`."""
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
    parser.add_argument(
        "--against", default="one-lane", choices=("one-lane", "pinned", "two-per-call")
    )
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0, help="each window")
    args = parser.parse_args()
    if args.pairs < 1 or args.seconds <= 0:
        raise SystemExit("error: --pairs must be at least 1 and --seconds above 0")
    cpus = sorted(os.sched_getaffinity(0))[:2] if hasattr(os, "sched_getaffinity") else []
    if args.against == "pinned" and len(cpus) < 2:
        raise SystemExit("error: --against pinned needs two CPUs that a thread can be pinned to")
    try:
        detector = load_detector(args.model, precision=args.precision)
    except (DetectorError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    lanes = detector.engine
    size = detector.config.image_size
    if args.against == "pinned":  # one session of one thread, shared by two lanes
        engine = OnnxEngine(lanes.path, threads=1, lanes=1)
        image = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
        baseline = functools.partial(lanes_rate, engine, image, cpus, False, args.seconds)
        candidate = functools.partial(lanes_rate, engine, image, cpus, True, args.seconds)
        names = ("unpinned", "pinned")
        print(f"{lanes.path.name}: two lanes of one image per call, unpinned against pinned")
    else:  # the same random batch of 32 through both engines, checked to agree first
        if args.against == "two-per-call":
            first, second = lanes, OnnxEngine(lanes.path, sub_batch=2)
            names = ("one per call", "two per call")
        else:
            first, second = OnnxEngine(lanes.path, lanes=1, spin=True), lanes
            names = ("one lane", "lanes")
        batch = np.random.default_rng(0).standard_normal((32, 3, size, size)).astype(np.float32)
        np.testing.assert_allclose(first.logits(batch), second.logits(batch), atol=1e-3)
        baseline = functools.partial(rate, first, batch, args.seconds)
        candidate = functools.partial(rate, second, batch, args.seconds)
        print(f"{lanes.path.name}: {second.lanes} lane(s) of {second.sub_batch} image(s) per "
              f"call against {first.lanes} of {first.sub_batch}")  # fmt: skip
    ratios = []
    for pair in range(1, args.pairs + 1):
        base, new = baseline(), candidate()
        ratios.append(new / base)
        print(f"{pair:2d}  {names[0]} {base:7.1f} images/s  {names[1]} {new:7.1f}  "
              f"ratio {new / base:.3f}")  # fmt: skip
    wins = sum(r > 1 for r in ratios)
    print(f"median ratio {np.median(ratios):.3f}, {names[1]} faster in {wins} of {len(ratios)} "
          "pairs")  # fmt: skip


if __name__ == "__main__":
    main()
