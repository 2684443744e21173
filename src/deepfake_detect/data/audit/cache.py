"""The audit's facts cached per dataset, keyed by the files' paths, sizes and times."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from deepfake_detect.data.audit.facts import AUDIT_VERSION, ImageFacts
from deepfake_detect.data.audit.report import AuditReport, compute_facts, report_from_facts
from deepfake_detect.data.datasets import ImageRecord
from deepfake_detect.distributed import current_world
from deepfake_detect.errors import DataError
from deepfake_detect.files import atomic_write_json, cache_root

# ---------------------------------------------------------------------------------------------
# Cache


def default_cache_dir() -> Path:
    """$DEEPFAKE_DETECT_CACHE, else $XDG_CACHE_HOME/deepfake-detect, else ~/.cache/..., + audit."""
    return cache_root() / "audit"


def cached_audit(
    records: Sequence[ImageRecord],
    cache_dir: Path | None = None,
    *,
    max_distance: int = 6,
    threshold: float = 0.9,
    workers: int = 2,
    progress: bool = False,
) -> AuditReport:
    """`audit_records` with the facts cached per dataset.

    The key hashes every record's path, size and modification time with AUDIT_VERSION and the
    pixel limit in force, so a changed, added or removed file (or another `--max-pixels`)
    computes everything again. Labels, sources and splits come
    from the records, not the cache: relabelling or resplitting needs no new reading.
    """
    if not records:
        raise DataError("no images to audit")
    path = Path(cache_dir or default_cache_dir()) / f"{_cache_key(records)}.json"
    facts = _load_cached_facts(path, records)
    if facts is None:
        facts = compute_facts(records, workers=workers, progress=progress)
        if current_world().main:  # under torchrun, rank 0 alone writes
            _save_cached_facts(path, facts)
    return report_from_facts(facts, max_distance=max_distance, threshold=threshold)


def _cache_key(records: Sequence[ImageRecord]) -> str:
    from deepfake_detect.data.images import max_pixels_limit

    # the pixel limit in force decides which images are unreadable: a part of the key
    head = f"deepfake-detect audit {AUDIT_VERSION} max_pixels={max_pixels_limit()}\n"
    digest = hashlib.sha256(head.encode())
    for path in sorted(str(r.path) for r in records):
        digest.update(json.dumps([path, *_file_stamp(path)]).encode() + b"\n")
    return digest.hexdigest()


def _file_stamp(path: str) -> tuple[int, int]:
    """(size, mtime_ns), or (-1, -1) for a file that cannot be looked at."""
    try:
        stat = os.stat(path)
    except OSError:
        return (-1, -1)
    return (stat.st_size, stat.st_mtime_ns)


def _load_cached_facts(path: Path, records: Sequence[ImageRecord]) -> list[ImageFacts] | None:
    """The cached facts in the order of `records`, None when absent, stale or damaged."""
    try:
        data = json.loads(path.read_text())
        if data["version"] != AUDIT_VERSION:
            return None
        stored = {d["path"]: ImageFacts.from_dict(d) for d in data["facts"]}
        return [_with_record(stored[str(r.path)], r) for r in records]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged cache is only a lost shortcut: compute again


def _with_record(facts: ImageFacts, record: ImageRecord) -> ImageFacts:
    return dataclasses.replace(facts, label=record.label, source=record.source, split=record.split)


def _save_cached_facts(path: Path, facts: Sequence[ImageFacts]) -> None:
    # A read-only or full cache folder costs only the next audit's time: it must not stop this one.
    with contextlib.suppress(OSError):
        atomic_write_json(path, {"version": AUDIT_VERSION, "facts": [f.to_dict() for f in facts]})
