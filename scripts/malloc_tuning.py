"""Peak memory and speed of scoring with malloc tuned (the default) and as glibc leaves it.

`predict` and `evaluate` set glibc's malloc before their threads start (`cli.common.tune_malloc`:
one arena, fixed mmap and trim thresholds); a malloc variable of the user's turns that off.

`--measure memory` scores 1,000 and 10,000 files (repeats of the same JPEGs, as the benchmark
does) with `predict` in new processes, alternating the tuned default with MALLOC_ARENA_MAX=64 set
(more arenas than a 2-CPU machine's threads can use: glibc's own behaviour), and prints the peak
resident size (VmHWM) of each run, its images/s (the whole process, start included), and the
10k / 1k ratio that issue 14 holds to 1.1.

`--measure pipeline` runs, in one new process per setting and repeat (interleaved), the whole
pipeline (`Detector.iter_scores` over the files, decoded between the engine's calls and in a
thread beside it, best of two passes) and then the model alone on one batch (the benchmark's
`throughput`: best of its windows over 10 s), and prints their ratio: the figure a busy CPU's
noise touches least. Settings: tuned, one arena alone, glibc's own.

`--measure serve` starts `deepfake-detect serve` (one worker, the bundled model) tuned and
with MALLOC_ARENA_MAX=64 in turn, sends it 5,000 images from 8 clients, and prints the
server's resident size after 500, 2,000 and 5,000 requests, its peak, and the seconds each
stretch took.

    python scripts/malloc_tuning.py --images ../shared/data/faces140k-sample \
        [--measure memory|pipeline|serve] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deepfake_detect.inference.benchmark import peak_memory_mb

SETTINGS = {"tuned (default)": None, "glibc's own (MALLOC_ARENA_MAX=64)": "64"}

PIPELINE = """
import ctypes, json, sys, time
from pathlib import Path
from deepfake_detect.cli.common import M_ARENA_MAX, tune_malloc
setting, folder, seconds = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
if setting == "tuned":
    assert tune_malloc()
elif setting == "one arena alone":
    ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1)
from deepfake_detect.inference import load_detector
from deepfake_detect.inference.benchmark import image_batch, throughput
files = sorted(folder.rglob("*.jpg"))
detector = load_detector(None)
row = {"malloc": setting}
for workers in (0, 1, 0, 1):
    start = time.perf_counter()
    for _ in detector.iter_scores(files, workers=workers):
        pass
    rate = len(files) / (time.perf_counter() - start)
    row[f"pipeline_workers_{workers}"] = max(row.get(f"pipeline_workers_{workers}", 0), rate)
batch = image_batch(detector, files, 32)
row["model"] = throughput(detector.engine.logits, batch, seconds)  # as the benchmark measures
for workers in (0, 1):
    row[f"ratio_workers_{workers}"] = row[f"pipeline_workers_{workers}"] / row["model"]
print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
"""


def measure_memory(files: list[Path], counts: list[int], repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for repeat in range(repeats):
            for name, value in SETTINGS.items():
                os.environ.pop("MALLOC_ARENA_MAX", None)
                if value is not None:
                    os.environ["MALLOC_ARENA_MAX"] = value
                row = {"malloc": name, "repeat": repeat}
                for count in counts:
                    listing = [str(f) for f in (files * math.ceil(count / len(files)))[:count]]
                    output = tmp / f"scores-{count}.jsonl"
                    start = time.perf_counter()
                    command = ["--quiet", "predict", *listing, "--output", str(output)]
                    peak = peak_memory_mb(command, tmp)
                    row[f"mb_{count}"] = round(peak, 1)
                    row[f"images_s_{count}"] = round(count / (time.perf_counter() - start), 1)
                row["ratio"] = round(row[f"mb_{counts[1]}"] / row[f"mb_{counts[0]}"], 3)
                print(json.dumps(row), flush=True)


def measure_pipeline(folder: Path, repeats: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUN"))}
    for _ in range(repeats):
        for setting in ("glibc's own", "one arena alone", "tuned"):
            command = [sys.executable, "-c", PIPELINE, setting, str(folder), "10"]
            result = subprocess.run(command, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"the {setting} run failed: {result.stderr.strip()[-300:]}")
            print(result.stdout.strip(), flush=True)




def resident_mb(pid: int) -> dict[str, float]:
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def measure_serve(files: list[Path], repeats: int, port: int = 8765, clients: int = 8) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from deepfake_detect.serving.local import wait_ready

    images = [path.read_bytes() for path in files]
    base = f"http://127.0.0.1:{port}"

    def client(chunk: list[bytes]) -> None:
        with httpx.Client(timeout=120) as session:
            for data in chunk:
                answer = session.post(f"{base}/v1/predict", files=[("file", ("a.jpg", data))])
                answer.raise_for_status()

    def send(count: int) -> None:
        items = [images[i % len(images)] for i in range(count)]
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client, [items[i::clients] for i in range(clients)]))

    plain = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUN"))}
    for repeat in range(repeats):
        for setting, value in SETTINGS.items():
            env = plain if value is None else {**plain, "MALLOC_ARENA_MAX": value}
            command = [sys.executable, "-m", "deepfake_detect.cli", "serve", "--port", str(port)]
            server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)  # fmt: skip
            try:
                wait_ready(base, lambda process=server: process.poll() is None, timeout=120)
                row, sent = {"malloc": setting, "repeat": repeat}, 0
                for total in (500, 2000, 5000):
                    start = time.perf_counter()
                    send(total - sent)
                    sent = total
                    row[f"seconds_to_{total}"] = round(time.perf_counter() - start, 1)
                    row[f"rss_mb_{total}"] = round(resident_mb(server.pid)["VmRSS"], 1)
                row["peak_mb"] = round(resident_mb(server.pid)["VmHWM"], 1)
            finally:
                server.terminate()
                server.wait()
            print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, required=True, help="folder of JPEG files")
    parser.add_argument("--measure", choices=("memory", "pipeline", "serve"), default="memory")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--files", default="1000,10000", help="the two file counts (memory)")
    args = parser.parse_args()
    files = sorted(args.images.rglob("*.jpg"))
    if not files:
        parser.error(f"no .jpg files under {args.images}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.measure == "memory":
        try:
            counts = [int(count) for count in args.files.split(",")]
        except ValueError:
            counts = []
        if len(counts) != 2 or min(counts) < 1:
            parser.error(f"--files takes two positive counts, got {args.files}")
        measure_memory(files, counts, args.repeats)
    elif args.measure == "pipeline":
        measure_pipeline(args.images, args.repeats)
    else:
        measure_serve(files, args.repeats)


if __name__ == "__main__":
    main()
