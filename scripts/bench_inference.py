"""Time CPU scoring of the same images by two models in one run, and print the ratio.

    python scripts/bench_inference.py runs/ensemble runs/single --images examples/ --repeat 64

Each model scores the images (decoding included, as `predict` does) after one warm-up batch;
the best of --rounds timings counts, so a background process slows neither model unfairly.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def images_per_second(detector, inputs: list, batch_size: int, rounds: int) -> float:
    detector.score(inputs[:batch_size], batch_size=batch_size)  # warm-up: allocations, caches
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        predictions = detector.score(inputs, batch_size=batch_size)
        best = min(best, time.perf_counter() - start)
        failed = next((p.error for p in predictions if p.error), None)
        if failed:
            raise ValueError(f"an image could not be scored: {failed}")
    return len(inputs) / best


def main(argv: list[str] | None = None) -> int:
    from deepfake_detect.errors import DetectorError
    from deepfake_detect.inference.detector import expand_paths, load_detector

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_a", help="model folder (the new path)")
    p.add_argument("model_b", help="model folder (the baseline)")
    p.add_argument("--images", type=Path, nargs="+", default=[Path("examples")])
    p.add_argument("--repeat", type=int, default=64, help="score each image this many times")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)
    try:
        counts = [args.repeat, args.rounds, args.batch_size]
        if min(counts + ([] if args.threads is None else [args.threads])) < 1:
            raise ValueError("--repeat, --rounds, --batch-size and --threads must be at least 1")
        if Path(args.model_a).resolve() == Path(args.model_b).resolve():
            raise ValueError("give two different models")
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        inputs = [path.read_bytes() for path in expand_paths(args.images)] * args.repeat
        rates = {}
        for name in (args.model_a, args.model_b):
            detector = load_detector(name, device="cpu")
            rates[name] = images_per_second(detector, inputs, args.batch_size, args.rounds)
    except (DetectorError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    threads = torch.get_num_threads()
    for name, rate in rates.items():
        print(f"{name}: {rate:.1f} images/s ({1000 / rate:.1f} ms an image, {threads} threads)")
    ratio = rates[args.model_a] / rates[args.model_b]
    print(f"speed ratio {args.model_a} / {args.model_b}: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
