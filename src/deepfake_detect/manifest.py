"""Split manifests that travel with a shipped model: which images it was trained, validated and
tested on, named by content (sha256) and by path relative to the data root.

A run folder's split.csv names absolute paths of one machine; a manifest still identifies the
held-out images on another machine, wherever the data lies.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from deepfake_detect.checkpoint import atomic_write_bytes
from deepfake_detect.datasets import LABEL_NAMES, ImageRecord
from deepfake_detect.errors import DataError

MANIFEST_NAME = "split_manifest.csv"
MANIFEST_COLUMNS = ("path", "sha256", "label", "source", "group", "split")


@dataclass(frozen=True)
class ManifestRow:
    path: str  # relative to the data root, with forward slashes
    sha256: str
    label: int
    source: str
    group: str
    split: str


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def manifest_rows(
    records: Iterable[ImageRecord], data_root: str | os.PathLike
) -> list[ManifestRow]:
    root = Path(data_root).resolve()
    rows = []
    for r in records:
        try:
            relative = r.path.resolve().relative_to(root).as_posix()
        except ValueError:
            raise DataError(f"{r.path}: not under the data root {root}") from None
        rows.append(ManifestRow(relative, file_sha256(r.path), r.label, r.source, r.group, r.split))
    return sorted(rows, key=lambda row: row.path)


def write_manifest(rows: Sequence[ManifestRow], path: str | os.PathLike) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for row in rows:
        label = LABEL_NAMES[row.label]
        writer.writerow([row.path, row.sha256, label, row.source, row.group, row.split])
    atomic_write_bytes(path, buffer.getvalue().encode(errors="surrogateescape"))


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.reader(f)
        if tuple(next(reader, ())) != MANIFEST_COLUMNS:
            raise DataError(f"{path}: not a split manifest (header {','.join(MANIFEST_COLUMNS)})")
        names = {name: label for label, name in LABEL_NAMES.items()}
        try:
            return [ManifestRow(p, h, names[lab], s, g, sp) for p, h, lab, s, g, sp in reader]
        except (KeyError, ValueError) as exc:
            raise DataError(f"{path}: malformed row ({exc})") from None
