"""Split manifests that travel with a shipped model: which images it was trained, validated and
tested on, named by content (sha256) and by path relative to the data root.

A run folder's split.csv names absolute paths of one machine; a manifest still identifies the
held-out images on another machine, wherever the data lies.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from deepfake_detect.data.datasets import LABEL_NAMES, SPLITS, ImageRecord
from deepfake_detect.errors import DataError
from deepfake_detect.files import atomic_write_bytes

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
    records: Iterable[ImageRecord],
    data_root: str | os.PathLike,
    beside: Sequence[str | os.PathLike] = (),
) -> list[ManifestRow]:
    """A row per record, its path relative to the data root. The folders `beside` (a run's
    `--fake-only` folders, which lie outside it) are named from the data root too, by a path
    that climbs out of it (`../fake-only/diffusion-faces/x.jpg`); any other image outside the
    root is a DataError."""
    root = Path(data_root).resolve()
    allowed = [Path(folder).resolve() for folder in beside]
    rows = []
    for r in records:
        path = r.path.resolve()
        if path.is_relative_to(root) or any(path.is_relative_to(a) for a in allowed):
            relative = Path(os.path.relpath(path, root)).as_posix()
        else:
            raise DataError(f"{r.path}: not under the data root {root}")
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
            rows = [ManifestRow(p, h, names[lab], s, g, sp) for p, h, lab, s, g, sp in reader]
        except (KeyError, ValueError) as exc:
            raise DataError(f"{path}: malformed row ({exc})") from None
    for row in rows:
        if row.split not in SPLITS:
            raise DataError(f"{path}: {row.path}: unknown split {row.split!r}")
    return rows


def apply_manifest_splits(
    records: Sequence[ImageRecord], rows: Sequence[ManifestRow]
) -> list[ImageRecord]:
    """The records, each image that the manifest names (by content) given the manifest's split
    and group; the others keep theirs, so `make_split` can split them around the fixed ones.

    This keeps a shipped model's held-out images held out when a dataset grows. An image found
    with another label than the manifest's, or a manifest that matches no image at all, is a
    DataError.
    """
    by_hash = {row.sha256: row for row in rows}
    out: list[ImageRecord] = []
    matched = 0
    for record in records:
        row = by_hash.get(file_sha256(record.path))
        if row is None:
            out.append(record)
            continue
        if row.label != record.label:
            raise DataError(
                f"{record.path}: labelled {LABEL_NAMES[record.label]} here but "
                f"{LABEL_NAMES[row.label]} in the split manifest ({row.path})"
            )
        out.append(dataclasses.replace(record, split=row.split, group=row.group))
        matched += 1
    if not matched:
        raise DataError("the split manifest names none of the images found in --data")
    return out
