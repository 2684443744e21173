"""The scoring pipeline against the model alone, for this checkout and an earlier commit.

Issue 14 holds `predict`'s pipeline (reading, decoding, resizing and scoring files) to 90% of
the model alone. Both figures move with a shared CPU's load, so this script measures them in
one process at a time, alternating this checkout's code with the code of `--against` (checked
out into a temporary git worktree, imported through PYTHONPATH), and compares the ratios:

- the pipeline: `Detector.iter_scores` over every image of `--images` with the default decoding
  (between the engine's calls on two CPUs), best of `--passes` passes; the same files and the
  same bundled model for both;
- the model alone: the benchmark's `throughput` on one batch of those files, best of its
  windows over 10 s.

    python scripts/pipeline_ab.py --images ../shared/data/faces140k-sample \
        [--against HEAD] [--repeats 5] [--passes 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from deepfake_detect.errors import DetectorError
from deepfake_detect.inference.inputs import expand_paths

CHILD = """
import json, sys, time
from pathlib import Path
from deepfake_detect.cli.common import tune_malloc
tune_malloc()
from deepfake_detect.inference import load_detector
from deepfake_detect.inference.benchmark import image_batch, throughput
from deepfake_detect.inference.inputs import expand_paths
folder, passes = Path(sys.argv[1]), int(sys.argv[2])
files = expand_paths([folder])
detector = load_detector(None)
for _ in detector.iter_scores(files[:64]):
    pass
best = 0.0
for _ in range(passes):
    start = time.perf_counter()
    for _ in detector.iter_scores(files):
        pass
    best = max(best, len(files) / (time.perf_counter() - start))
model = throughput(detector.score_arrays, image_batch(detector, files, 32), 10.0)
import deepfake_detect
print(json.dumps({"pipeline": best, "model": model, "ratio": best / model,
                  "code": deepfake_detect.__file__}))
"""


def run_child(src: Path, images: Path, passes: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(images), str(passes)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"error: the measurement failed: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, required=True, help="a folder of images")
    parser.add_argument("--against", default="HEAD", help="the commit to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()
    if args.repeats < 1 or args.passes < 1:
        raise SystemExit("error: --repeats and --passes must be at least 1")
    if not args.images.is_dir():
        raise SystemExit(f"error: {args.images}: not a folder")
    try:
        expand_paths([args.images])
    except DetectorError as exc:
        raise SystemExit(f"error: {exc}") from None
    here = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="pipeline-ab-") as tmp:
        base = Path(tmp) / "base"
        added = subprocess.run(
            ["git", "-C", str(here), "worktree", "add", "--detach", str(base), args.against],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if added.returncode != 0:
            raise SystemExit(f"error: cannot check out {args.against}: {added.stderr.strip()}")
        try:
            sources = {"this checkout": here / "src", args.against: base / "src"}
            rows: dict[str, list[dict]] = {name: [] for name in sources}
            for repeat in range(args.repeats):
                for name, src in sources.items():
                    row = run_child(src, args.images, args.passes)
                    if not row["code"].startswith(str(src)):
                        raise SystemExit(f"error: {name} imported {row['code']}, not {src}")
                    rows[name].append(row)
                    print(
                        f"{repeat + 1}  {name:14s} pipeline {row['pipeline']:6.1f} images/s  "
                        f"model {row['model']:6.1f}  ratio {row['ratio']:.3f}",
                        flush=True,
                    )
        finally:
            subprocess.run(["git", "-C", str(here), "worktree", "remove", "--force", str(base)],
                           capture_output=True, check=False)  # fmt: skip
    for name, measured in rows.items():
        ratios = [r["ratio"] for r in measured]
        print(f"{name:14s} pipeline / model: median {statistics.median(ratios):.3f}, "
              f"range {min(ratios):.3f}-{max(ratios):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
