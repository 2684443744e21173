"""`deepfake-detect` as torchrun starts it in the tests, with a record of what each rank writes.

An audit hook notes every file opened for writing, renamed or created under the folders named
in $WRITES_WATCH (colon-separated); at exit each rank writes its list to
$WRITES_RECORD/rank-N.json (outside the watched folders), so a test can check that rank 0
alone wrote the run's files.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path

WATCH = [os.path.realpath(p) for p in os.environ.get("WRITES_WATCH", "").split(":") if p]
WRITES: list[str] = []
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def watched(path) -> bool:
    if not isinstance(path, (str, bytes, os.PathLike)):
        return False
    real = os.path.realpath(os.fsdecode(path))
    return any(real == w or real.startswith(w + os.sep) for w in WATCH)


def hook(event: str, args: tuple) -> None:
    if event == "open":
        path, mode, flags = args
        writing = (mode is not None and any(c in mode for c in "wax+")) or (
            mode is None and isinstance(flags, int) and flags & WRITE_FLAGS
        )
        if writing and watched(path):
            WRITES.append(f"open {path}")
    elif event in ("os.rename", "os.mkdir", "os.remove") and watched(args[0]):
        WRITES.append(f"{event} {args[0]}")


def dump() -> None:
    record = os.environ.get("WRITES_RECORD")
    if record:
        rank = os.environ.get("RANK", "0")
        Path(record, f"rank-{rank}.json").write_text(json.dumps(WRITES))


if WATCH:
    sys.addaudithook(hook)
    atexit.register(dump)

from deepfake_detect.cli.app import main  # noqa: E402

sys.argv[0] = "deepfake-detect"
main()
