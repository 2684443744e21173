"""Load test of the HTTP service on loopback: N concurrent clients send M images each.

Prints throughput, p50 / p99 latency and the error count, for micro-batching on and off in one
run (the same images, the same server settings otherwise), so the two rows compare. Not a test:
figures depend on the machine and whatever else it runs.

    python scripts/load_test.py --clients 8 --images 25 [--model M] [--image-dir DIR]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from deepfake_detect.serving.app import create_app
from deepfake_detect.serving.local import serve_in_thread as running_server
from deepfake_detect.serving.settings import ServiceSettings


def sample_images(image_dir: Path | None, count: int) -> list[bytes]:
    if image_dir is not None:
        paths = sorted(p for p in image_dir.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
        if not paths:
            raise SystemExit(f"error: no .jpg or .png files under {image_dir}")
        return [paths[i % len(paths)].read_bytes() for i in range(count)]
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        pixels = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, "JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


def client_run(base: str, images: list[bytes]) -> tuple[list[float], int]:
    latencies, errors = [], 0
    with httpx.Client(timeout=120) as client:
        for data in images:
            start = time.perf_counter()
            answer = client.post(f"{base}/v1/predict", files=[("file", ("a.jpg", data))])
            latencies.append(time.perf_counter() - start)
            errors += answer.status_code != 200
    return latencies, errors


def measure(settings: ServiceSettings, clients: int, images: list[list[bytes]]) -> dict:
    app = create_app(settings)
    with running_server(app) as base:
        client_run(base, images[0][:2])  # warm-up: sessions, first-call allocations
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            runs = list(pool.map(lambda chunk: client_run(base, chunk), images))
        wall = time.perf_counter() - start
        batches = app.state.service.batcher.batches
    latencies = sorted(t for run, _ in runs for t in run)
    n = len(latencies)
    return {
        "images_per_s": n / wall, "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(n - 1, int(0.99 * n))],
        "errors": sum(e for _, e in runs), "requests": n, "mean_batch": n / max(batches, 1),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--images", type=int, default=25, help="per client")
    parser.add_argument("--model", default=None, help="default: the bundled model")
    parser.add_argument("--image-dir", type=Path, default=None)
    args = parser.parse_args()
    if args.clients < 1 or args.images < 1:
        raise SystemExit("error: --clients and --images must be at least 1")
    pool = sample_images(args.image_dir, args.clients * args.images)
    chunks = [pool[i :: args.clients] for i in range(args.clients)]
    print(f"{args.clients} clients x {args.images} images, one image per request, loopback")
    print("| micro-batching | images/s | p50 ms | p99 ms | errors | mean batch |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, max_batch, wait in (("on (8, 5 ms)", 8, 5.0), ("off", 1, 0.0)):
        settings = ServiceSettings(model=args.model, max_batch=max_batch, batch_wait_ms=wait,
                                   max_pending=max(32, args.clients))  # fmt: skip
        r = measure(settings, args.clients, chunks)
        print(f"| {label} | {r['images_per_s']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
              f"{r['errors']} of {r['requests']} | {r['mean_batch']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
