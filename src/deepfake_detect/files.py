"""Writing files safely: atomic writes (a killed process leaves no partial file), outputs checked
before any work, and content hashes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO


def check_output_path(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Refuse, before any work is done, an output that could not be written: a file where a
    folder must go (or a folder where a file must), a file standing where a parent folder
    would have to be created, or a folder where no file can be created (read-only, full, not
    ours). A ValueError naming the option and the path.

    Whether a file can be created is found out by creating one, a hidden temporary file
    beside the output, and removing it: permissions alone do not tell (root, ACLs, read-only
    mounts)."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise ValueError(f"--output {path}: exists and is not a folder")
    if not folder and path.is_dir():
        raise ValueError(f"--output {path}: is a folder; give a file name")
    candidates = [path] if folder else []
    for parent in [*candidates, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"--output {path}: {parent} is a file, not a folder")
            _check_writable(path, parent)
            return


def _check_writable(path: Path, folder: Path) -> None:
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".deepfake-detect-probe-")
    except OSError as exc:
        raise ValueError(
            f"--output {path}: cannot write in {folder} ({exc.strerror or exc})"
        ) from None
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write `path` through: a hidden temporary file beside it, renamed to
    `path` when the block ends, removed when it raises (or the process is killed before), so
    `path` is never seen half-written. A long output can stream into it as it is made.

    An OSError names `path`, never the temporary file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes files only their owner can read
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not exc.filename:
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write through a temporary file and rename, so a killed process leaves no partial file."""
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode())


def cache_root() -> Path:
    """The user's cache for this tool: $DEEPFAKE_DETECT_CACHE, else
    $XDG_CACHE_HOME/deepfake-detect, else ~/.cache/deepfake-detect. Each user of it takes a
    subfolder (audit reports, ONNX exports)."""
    if os.environ.get("DEEPFAKE_DETECT_CACHE"):
        return Path(os.environ["DEEPFAKE_DETECT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deepfake-detect"


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
