"""Train several candidate recipes side by side and rank them on the validation split.

    python scripts/sweep.py --data ../shared/data --out runs/sweep \
        --candidates scripts/sweep_candidates.json --parallel 4 --workers 3 --deadline 600

Each candidate is `deepfake-detect train` with the shared base options of the candidates file
plus its own, followed by `deepfake-detect evaluate --split valid --jpeg-quality 75`. The
ranking is the selection rule of the bundled model: the lower of the per-source ROC-AUCs at
JPEG quality 75, on validation only (the held-out split is measured once, after choosing).
Candidates still training at --deadline seconds are stopped and reported as unfinished, with
their last validation row. The table goes to stdout and, with every number, to summary.json.
With --expect-split MANIFEST each run's split is compared with a committed split manifest, so
that a candidate can only be shipped when it held out the same images.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        base, candidates = read_candidates(args.candidates, args.only)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    queue = list(candidates.items())
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    results: dict[str, dict] = {}
    while queue or running:
        late = time.monotonic() - start > args.deadline
        while queue and len(running) < args.parallel and not late:
            name, extra = queue.pop(0)
            running[name] = (launch(args, name, base + extra), time.monotonic())
        for name, (proc, began) in list(running.items()):
            if late and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
            if proc.poll() is not None:
                del running[name]
                results[name] = collect(args, name, base + candidates[name], proc.returncode)
                results[name]["seconds"] = round(time.monotonic() - began, 1)
        if late:
            for name, extra in queue:
                results[name] = {"status": "not started", "args": base + extra}
            queue = []
        time.sleep(2)
    summary = {"rule": "min over sources of valid ROC-AUC at JPEG q75", "runs": results}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print_table(results)
    return 0


def read_candidates(path: Path, only: list[str] | None) -> tuple[list[str], dict[str, list]]:
    """The shared options and the named candidates' own; ValueError for a malformed file."""
    spec = json.loads(path.read_text())
    base, candidates = spec.get("base"), spec.get("candidates")
    if not isinstance(base, list) or not isinstance(candidates, dict) or not candidates:
        raise ValueError(f"{path}: needs a 'base' list of options and a 'candidates' object")
    unknown = sorted(set(only or ()) - set(candidates))
    if unknown:
        raise ValueError(f"{path}: no candidate named {', '.join(unknown)}")
    return base, {k: v for k, v in candidates.items() if not only or k in only}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", type=Path, required=True)
    default = Path(__file__).with_name("sweep_candidates.json")
    p.add_argument("--candidates", type=Path, default=default)
    p.add_argument("--only", nargs="*", help="Names of the candidates to run (default: all).")
    p.add_argument("--parallel", type=int, default=1, help="Candidates trained at once.")
    p.add_argument("--workers", type=int, default=2, help="Decoding processes per candidate.")
    p.add_argument("--deadline", type=float, default=float("inf"), help="Seconds; then stop.")
    p.add_argument("--device", default="auto")
    p.add_argument("--exe", default=shutil.which("deepfake-detect") or "deepfake-detect")
    p.add_argument("--expect-split", type=Path, help="Split manifest the runs must reproduce.")
    return p.parse_args(argv)


def launch(args, name: str, train_args: list[str]) -> subprocess.Popen:
    """Train, then evaluate on validation at q75, as one shell job in its own process group."""
    run = args.out / name
    train = [
        args.exe,
        "train",
        "--data",
        args.data,
        "--output",
        str(run),
        *train_args,
        "--workers",
        str(args.workers),
        "--device",
        args.device,
    ]
    evaluate = [
        args.exe,
        "evaluate",
        "--model",
        str(run),
        "--data",
        args.data,
        "--split",
        "valid",
        "--jpeg-quality",
        "75",
        "--device",
        args.device,
        "--output",
        str(run / "valid75"),
    ]
    log = open(args.out / f"{name}.log", "w")  # noqa: SIM115 - closed with the child
    script = f"{_quote(train)} && {_quote(evaluate)}"
    return subprocess.Popen(
        ["bash", "-c", script],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )


def _quote(command: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(str(c)) for c in command)


def collect(args, name: str, train_args: list[str], returncode: int) -> dict:
    run = args.out / name
    result: dict = {"args": train_args, "status": "done" if returncode == 0 else f"rc {returncode}"}
    history = run / "history.csv"
    if history.is_file():
        rows = list(csv.DictReader(history.open()))
        result["epochs"] = len(rows)
        result["last_epoch"] = rows[-1] if rows else None
    metrics = run / "valid75" / "metrics.json"
    if metrics.is_file():
        m = json.loads(metrics.read_text())
        per = {
            s: [round(v["accuracy"], 4), round(v["roc_auc"], 4)] for s, v in m["per_source"].items()
        }
        result |= {
            "per_source": per,
            "score": min(auc for _, auc in per.values()),
            "accuracy": round(m["accuracy"], 4),
            "roc_auc": round(m["roc_auc"], 4),
        }
    if args.expect_split and (run / "split.csv").is_file():
        result["split_differs"] = split_differences(run / "split.csv", args.expect_split)
    return result


def split_differences(split_csv: Path, manifest: Path) -> int:
    """Images whose split differs from the manifest's (paths compared below the data root)."""
    want = {r["path"]: r["split"] for r in csv.DictReader(manifest.open())}
    got = {}
    for r in csv.DictReader(split_csv.open()):
        parts = Path(r["path"]).parts
        got["/".join(parts[-3:])] = r["split"]
    return sum(got.get(path) != split for path, split in want.items()) + len(set(got) - set(want))


def print_table(results: dict[str, dict]) -> None:
    ranked = sorted(results.items(), key=lambda kv: -kv[1].get("score", -1))
    for name, r in ranked:
        per = "  ".join(f"{s} {a:.3f}/{u:.3f}" for s, (a, u) in r.get("per_source", {}).items())
        extra = f"split_differs={r['split_differs']}" if "split_differs" in r else ""
        print(
            f"{name:18s} {r['status']:8s} epochs={r.get('epochs', 0):2d} "
            f"t={r.get('seconds', 0):6.1f}s score={r.get('score', float('nan')):.4f}  {per} {extra}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
