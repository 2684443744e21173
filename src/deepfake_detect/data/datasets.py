"""Index the face-image datasets: find the images and their labels, split, sample and save them.

Label convention everywhere: real = 0, fake = 1.

Layouts that `index_dataset` accepts for each root folder:

1. The Kaggle "140k Real and Fake Faces" root (``train.csv``, ``valid.csv``, ``test.csv`` and
   ``real_vs_fake/real-vs-fake/{train,valid,test}/{real,fake}/``), the ``real-vs-fake`` folder
   itself, or any folder that directly holds ``train/ valid/ test/`` each with ``real/ fake/``.
2. A folder with ``real/`` and ``fake/`` subfolders: one source, split unknown.
3. A folder whose subfolders each hold one dataset of layout 1 or 2: one source per subfolder.

Only file names are looked at here; the image loader checks the true format of each file later.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import tempfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import numpy as np

from deepfake_detect.data.images import SNIFF_BYTES, sniff_format
from deepfake_detect.errors import DataError

log = logging.getLogger("deepfake_detect")

SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif",
    ".avif", ".heic", ".heif",
})  # fmt: skip
"""Suffixes a folder scan takes as images; a file without a suffix is judged by its bytes."""
CLASS_DIRS = {"real": 0, "fake": 1}
SPLIT_NAME = "split.csv"  # the split a run made, kept in its run folder
LABEL_NAMES = {label: name for name, label in CLASS_DIRS.items()}
# Kaggle copies differ in how they name the validation split.
SPLIT_ALIASES = {
    "train": "train",
    "valid": "valid",
    "val": "valid",
    "validation": "valid",
    "test": "test",
}
# Where the images of the Kaggle 140k set sit, relative to its root (the CSV paths start there).
KAGGLE_IMAGE_DIRS = (("real_vs_fake", "real-vs-fake"), ("real-vs-fake",))
CSV_COLUMNS = ("path", "label", "label_str", "source", "group", "split")

_CLASS_NAMES = {name: name for name in CLASS_DIRS}
_SUFFIX_HINT = ", ".join(sorted(IMAGE_SUFFIXES))
_NO_LAYOUT = (
    "expected real/ and fake/ subfolders, subfolders that hold them, or the Kaggle 140k layout"
)
# Folders that archive tools leave behind; they never hold a dataset.
_IGNORED_DIRS = frozenset({"__MACOSX"})


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset.

    `group` names the images that must stay on one side of a split (the same photo or person);
    `index_dataset` gives each image its own group, f"{source}/{relative path without suffix}".
    `crop` (x1, y1, x2, y2 in pixels of the image as loaded) is the part that training reads,
    set by `train --reframe`; never written to split.csv.
    """

    path: Path
    label: int
    source: str
    group: str
    split: str | None = None
    crop: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        # A bad label or split here is a bug in the caller, not bad user data.
        if self.label not in LABEL_NAMES:
            raise ValueError(f"label must be 0 (real) or 1 (fake), got {self.label!r}")
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(
                f"split must be one of {', '.join(SPLITS)} or None, got {self.split!r}"
            )


# ---------------------------------------------------------------------------------------------
# Indexing


def index_dataset(roots: Sequence[str | os.PathLike]) -> list[ImageRecord]:
    """Index every image under the given dataset folders, sorted by path.

    Raises DataError when a folder is missing, matches no layout, lacks a class or has no images,
    or when two roots give the same source name (their groups and counts would mix).
    """
    if isinstance(roots, (str, os.PathLike)):
        roots = [roots]  # a lone path is a sequence of characters, not of roots
    if not roots:
        raise DataError("no dataset folder given")
    records: list[ImageRecord] = []
    seen: dict[str, Path] = {}  # source name -> the root it came from
    for root in roots:
        path = Path(os.path.abspath(root))  # absolute, but symlinks kept as the user gave them
        found = _index_root(path)
        for source in sorted({r.source for r in found}):
            if source in seen:
                raise DataError(
                    f"source name {source!r} appears twice, in {seen[source]} and {path}; "
                    "rename one folder"
                )
            seen[source] = path
        records += found
    return sorted(records, key=_order_key)


def index_labelled_folder(root: str | os.PathLike, label: int) -> list[ImageRecord]:
    """Every image below `root` (any layout, recursively), all with one label: a folder of
    real photos only, measured for false alarms, or of fakes only. Its source is the folder's
    name; each image is its own group; no split (an evaluation counts such images as test)."""
    if label not in LABEL_NAMES:
        raise ValueError(f"label must be 0 (real) or 1 (fake), got {label!r}")
    path = Path(os.path.abspath(root))
    if not path.is_dir():
        raise DataError(f"{path}: no such folder")
    images = _find_images(path)
    if not images:
        raise DataError(f"{path}: no images ({_SUFFIX_HINT})")
    return sorted((_record(p, label, path.name, path, None) for p in images), key=_order_key)


def _index_root(root: Path) -> list[ImageRecord]:
    """Index one root of any layout."""
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    records = _index_source(root, root.name)
    if records is not None:
        return records
    subdirs = [d for d in _list_dir(root) if d.is_dir() and not _ignored(d.name)]
    found = {d: _index_source(d, d.name) for d in subdirs}
    if not any(found.values()):
        raise DataError(f"{root}: {_NO_LAYOUT}")
    records = []
    for sub, sub_records in found.items():
        if sub_records is None:
            # Strict on purpose: silently skipping a misnamed folder would drop its images.
            raise DataError(f"{sub}: expected real/ and fake/ subfolders or the Kaggle 140k layout")
        records += sub_records
    return records


def _index_source(folder: Path, source: str) -> list[ImageRecord] | None:
    """Index a folder that holds one source (layouts 1 and 2); None when it is neither."""
    csvs = _kaggle_csvs(folder)
    if csvs:
        return _index_kaggle_csvs(folder, source, csvs)
    image_dir = _kaggle_image_dir(folder)
    if image_dir is not None:
        return _index_split_folders(image_dir, source)
    splits = _subdirs(folder, SPLIT_ALIASES)
    if splits:
        return _index_split_folders(folder, source, splits)
    if _subdirs(folder, _CLASS_NAMES):
        return _class_records(folder, source, base=folder, split=None)
    return None


def _index_split_folders(
    folder: Path, source: str, splits: Mapping[str, Path] | None = None
) -> list[ImageRecord]:
    """Index `folder/{train,valid,test}/{real,fake}`; a split that is present needs both classes."""
    splits = splits or _subdirs(folder, SPLIT_ALIASES)
    if not splits:
        raise DataError(f"{folder}: no train/, valid/ or test/ folder")
    records: list[ImageRecord] = []
    for split in SPLITS:
        if split in splits:
            records += _class_records(splits[split], source, base=folder, split=split)
    return records


def _class_records(
    folder: Path, source: str, *, base: Path, split: str | None
) -> list[ImageRecord]:
    """Index `folder/real` and `folder/fake`, both of which must hold images."""
    classes = _subdirs(folder, _CLASS_NAMES)
    records: list[ImageRecord] = []
    for name, label in CLASS_DIRS.items():
        if name not in classes:
            raise DataError(f"{folder}: no {name}/ folder")
        images = _find_images(classes[name])
        if not images:
            raise DataError(f"{classes[name]}: no images ({_SUFFIX_HINT})")
        records += [_record(path, label, source, base, split) for path in images]
    return records


def _record(path: Path, label: int, source: str, base: Path, split: str | None) -> ImageRecord:
    """Build a record whose group is the image's path below `base`, without suffix."""
    relative = path.relative_to(base).with_suffix("").as_posix()
    return ImageRecord(
        path=path, label=label, source=source, group=f"{source}/{relative}", split=split
    )


# ---------------------------------------------------------------------------------------------
# Kaggle 140k CSVs


def _kaggle_csvs(folder: Path) -> dict[str, Path]:
    """The split CSVs directly in `folder` (train.csv, valid.csv, test.csv and aliases)."""
    found: dict[str, Path] = {}
    for entry in _list_dir(folder):
        split = SPLIT_ALIASES.get(entry.stem.lower())
        if split is None or entry.suffix.lower() != ".csv" or not entry.is_file():
            continue
        if split in found:
            raise DataError(
                f"{folder}: both {found[split].name} and {entry.name} give the {split} split"
            )
        found[split] = entry
    return found


def _kaggle_image_dir(folder: Path) -> Path | None:
    """The folder of the Kaggle 140k images below `folder`, if there is one."""
    for parts in KAGGLE_IMAGE_DIRS:
        candidate = folder.joinpath(*parts)
        if candidate.is_dir():
            return candidate
    return None


def _index_kaggle_csvs(folder: Path, source: str, csvs: Mapping[str, Path]) -> list[ImageRecord]:
    """Index the Kaggle 140k set from its CSVs; their paths are relative to the image folder."""
    base = _kaggle_image_dir(folder) or folder
    split_dirs = _subdirs(base, SPLIT_ALIASES)
    records: list[ImageRecord] = []
    for split in SPLITS:
        if split in csvs:
            records += _read_kaggle_csv(csvs[split], source, base, split)
        elif split in split_dirs:
            # A copy that lost one CSV still has the images: use the folder, and say so.
            found = _class_records(split_dirs[split], source, base=base, split=split)
            log.info("%s: no %s.csv, so the %d images of %s are indexed from the folder",
                     folder, split, len(found), split_dirs[split])  # fmt: skip
            records += found
    return records


def _read_kaggle_csv(csv_path: Path, source: str, base: Path, split: str) -> list[ImageRecord]:
    """Read one Kaggle CSV (columns `,original_path,id,label,label_str,path`)."""
    records: list[ImageRecord] = []
    missing: list[Path] = []
    for line, row in _csv_dict_rows(csv_path, required=("label_str", "path")):
        # The numeric `label` column is 1 for REAL in this set, the opposite of our convention:
        # label_str is the unambiguous one.
        label_str = (row["label_str"] or "").strip().lower()
        if label_str not in CLASS_DIRS:
            raise DataError(f"{csv_path}, line {line}: label_str {label_str!r} is not real or fake")
        relative = (row["path"] or "").strip().replace("\\", "/")
        if not relative:
            raise DataError(f"{csv_path}, line {line}: empty path")
        path = Path(os.path.abspath(base / relative))
        if not path.is_file():
            missing.append(path)
        group = f"{source}/{PurePosixPath(relative).with_suffix('')}"
        records.append(ImageRecord(path, CLASS_DIRS[label_str], source, group, split))
    if missing:
        raise DataError(
            f"{csv_path}: {len(missing)} listed images are missing, first: {missing[0]}"
        )
    for name, label in CLASS_DIRS.items():
        if not any(r.label == label for r in records):
            raise DataError(f"{csv_path}: no {name} images listed")
    return records


def _csv_dict_rows(path: Path, required: Sequence[str]) -> Iterable[tuple[int, dict[str, str]]]:
    """Yield (line number, row) of a CSV with a header, checking the required columns."""
    try:
        # utf-8-sig: spreadsheet programs often save CSVs with a byte-order mark.
        with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            absent = [c for c in required if c not in columns]
            if absent:
                raise DataError(f"{path}: no {', '.join(absent)} column in the header")
            reader.fieldnames = columns
            for row in reader:
                yield reader.line_num, row
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: cannot read CSV: {err}") from err


# ---------------------------------------------------------------------------------------------
# Folder helpers


def _list_dir(folder: Path) -> list[Path]:
    """Entries of `folder` in name order, without hidden ones."""
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as err:
        raise DataError(f"{folder}: cannot list folder: {err.strerror}") from err


def _ignored(name: str) -> bool:
    """True for folder names that never hold images (hidden, archive leftovers)."""
    return name.startswith(".") or name in _IGNORED_DIRS


def _subdirs(folder: Path, names: Mapping[str, str]) -> dict[str, Path]:
    """Subfolders whose lower-cased name is a key of `names`, keyed by the canonical name."""
    found: dict[str, Path] = {}
    for entry in _list_dir(folder):
        canonical = names.get(entry.name.lower())
        if canonical is None or not entry.is_dir():
            continue
        if canonical in found:
            raise DataError(f"{folder}: both {found[canonical].name}/ and {entry.name}/ found")
        found[canonical] = entry
    return found


def _find_images(folder: Path) -> list[Path]:
    """Image files below `folder` (see `scan_folder`); the others are counted in the log."""
    images, skipped = scan_folder(folder)
    if skipped:
        log.info("%s: %d files that are not images skipped, first: %s",
                 folder, len(skipped), skipped[0].name)  # fmt: skip
    return images


def scan_folder(folder: Path) -> tuple[list[Path], list[Path]]:
    """The image files below `folder`, recursively and sorted, and the other files skipped.

    Hidden files and folders are neither. An image is a file with a suffix of
    `IMAGE_SUFFIXES`, or without a suffix and with an image's first bytes (downloads and
    cameras leave such files). Named pipes, sockets and devices are skipped: reading one in a
    folder could wait forever for a writer.
    """

    def fail(err: OSError) -> None:
        raise DataError(f"{err.filename}: cannot list folder: {err.strerror}")

    images: list[Path] = []
    skipped: list[Path] = []
    for parent, dirs, files in os.walk(folder, onerror=fail):
        dirs[:] = [d for d in dirs if not _ignored(d)]  # prune in place so walk skips them
        for name in files:
            if not name.startswith("."):
                path = Path(parent, name)
                regular = path.is_file()  # follows links; False for a pipe or a device
                (images if regular and is_image_file(path) else skipped).append(path)
    return sorted(images), sorted(skipped)


def is_image_file(path: Path) -> bool:
    """By the suffix; a file without one by its magic bytes."""
    if path.suffix:
        return path.suffix.lower() in IMAGE_SUFFIXES
    try:
        with open(path, "rb") as file:
            return sniff_format(file.read(SNIFF_BYTES)) is not None
    except OSError:
        return False  # unreadable: not taken as an image here; listing it would fail later


def _order_key(record: ImageRecord) -> tuple[str, str, int]:
    """A total order on records that does not depend on the order they came in."""
    return (str(record.path), record.source, record.label)


# ---------------------------------------------------------------------------------------------
# Splitting and sampling


def make_split(
    records: Sequence[ImageRecord],
    *,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> list[ImageRecord]:
    """Give a split to every record without one; records that have a split keep it.

    Stratified by (source, label); whole groups go to one side. A group spanning several strata
    is assigned once, in the stratum of its first record by path. An unsplit record whose group
    already has a split joins that split. Within a stratum, groups are shuffled with a generator
    seeded from (seed, stratum) and laid end to end: a group goes to test while its middle image
    falls in the first test_fraction of the images, then to valid, then to train. A stratum
    whose groups would all leave train gives its last group to train. The result depends only
    on the records and the seed, not their order; it keeps the input order.
    """
    _check_fractions(valid_fraction, test_fraction)
    check_groups(records)
    assigned = {r.group: r.split for r in records if r.split is not None}
    pending: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        if record.group not in assigned:
            pending[record.group].append(record)
    strata: dict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
    for group, members in pending.items():
        first = min(members, key=_order_key)
        strata[(first.source, first.label)].append((group, len(members)))
    for stratum, groups in strata.items():
        assigned.update(_split_stratum(stratum, groups, valid_fraction, test_fraction, seed))
    return [r if r.split is not None else replace(r, split=assigned[r.group]) for r in records]


def _check_fractions(valid_fraction: float, test_fraction: float) -> None:
    """Raise ValueError unless both fractions are in [0, 1) and leave room for training."""
    for name, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:  # also false for NaN
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if valid_fraction + test_fraction >= 1:
        raise ValueError(
            f"valid_fraction + test_fraction must be below 1, got {valid_fraction + test_fraction}"
        )


def _split_stratum(
    stratum: tuple[str, int],
    groups: list[tuple[str, int]],
    valid_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, str]:
    """Assign the (group, size) pairs of one stratum to splits."""
    groups = sorted(groups)  # the shuffle must not depend on the input order
    # One generator per stratum, so adding a source leaves the split of the others unchanged.
    rng = np.random.default_rng([seed, zlib.crc32(f"{stratum[0]}\0{stratum[1]}".encode())])
    order = rng.permutation(len(groups))
    total = sum(size for _, size in groups)
    test_end = test_fraction * total
    valid_end = test_end + valid_fraction * total
    splits: dict[str, str] = {}
    done = 0
    for index in order:
        group, size = groups[index]
        middle = done + size / 2  # rounds each boundary to the nearest group edge
        splits[group] = "test" if middle < test_end else "valid" if middle < valid_end else "train"
        done += size
    if "train" not in splits.values():
        splits[groups[order[-1]][0]] = "train"
    return splits


def check_groups(records: Iterable[ImageRecord]) -> None:
    """Raise DataError if a group has images in more than one split (unsplit ones ignored)."""
    splits: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if record.split is not None:
            splits[record.group].add(record.split)
    straddling = sorted(group for group, found in splits.items() if len(found) > 1)
    if straddling:
        first = straddling[0]
        where = ", ".join(sorted(splits[first], key=SPLITS.index))
        raise DataError(f"{len(straddling)} group(s) straddle splits, first: {first!r} in {where}")


def sample_balanced(records: Sequence[ImageRecord], n: int, *, seed: int = 0) -> list[ImageRecord]:
    """Draw n records without replacement, half real and half fake, sorted by path.

    With an odd n the extra record is real. Within a class, each source gets a share
    proportional to its size (largest remainders, ties by source name). Seeded and independent
    of the input order. Raises DataError when a class has fewer records than its half.
    """
    if n < 0:
        raise ValueError(f"n must be at least 0, got {n}")
    wanted = {0: n - n // 2, 1: n // 2}
    rng = np.random.default_rng(seed)
    chosen: list[ImageRecord] = []
    for label, count in wanted.items():
        pool = [r for r in records if r.label == label]
        if count > len(pool):
            raise DataError(
                f"asked for {count} {LABEL_NAMES[label]} images, but there are only {len(pool)}"
            )
        by_source: dict[str, list[ImageRecord]] = defaultdict(list)
        for record in sorted(pool, key=_order_key):
            by_source[record.source].append(record)
        quotas = _proportional(count, {s: len(v) for s, v in by_source.items()})
        for source in sorted(by_source):
            picks = rng.choice(len(by_source[source]), size=quotas[source], replace=False)
            chosen += [by_source[source][i] for i in picks]
    return sorted(chosen, key=_order_key)


def _proportional(total: int, sizes: Mapping[str, int]) -> dict[str, int]:
    """Split `total` over keys in proportion to `sizes` (largest remainder, exact integers)."""
    whole = sum(sizes.values())
    if whole == 0:
        return dict.fromkeys(sizes, 0)
    shares = {key: total * size // whole for key, size in sizes.items()}
    remainders = sorted(sizes, key=lambda key: (-(total * sizes[key] % whole), key))
    for key in remainders[: total - sum(shares.values())]:
        shares[key] += 1
    return shares


def select(records: Iterable[ImageRecord], split: str) -> list[ImageRecord]:
    """The records of one split; ValueError for a split name other than train/valid/test."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}, expected one of {', '.join(SPLITS)}")
    return [r for r in records if r.split == split]


def count_table(records: Iterable[ImageRecord]) -> list[dict]:
    """Rows {"source", "split", "real", "fake"} per source and split (None = unsplit), for logs."""
    counts = Counter((r.source, r.split, r.label) for r in records)
    keys = sorted({(source, split) for source, split, _ in counts}, key=_table_key)
    return [
        {
            "source": source,
            "split": split,
            "real": counts[source, split, 0],
            "fake": counts[source, split, 1],
        }
        for source, split in keys
    ]


def _table_key(key: tuple[str, str | None]) -> tuple[str, int]:
    """Sort by source, then train/valid/test, unsplit last."""
    source, split = key
    return (source, SPLITS.index(split) if split in SPLITS else len(SPLITS))


# ---------------------------------------------------------------------------------------------
# Split CSVs


def write_split_csv(records: Iterable[ImageRecord], path: str | os.PathLike) -> None:
    """Write records as CSV (path,label,label_str,source,group,split); unsplit = empty split.

    The file is written next to its destination and renamed over it, so a crash never leaves a
    half-written split behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # surrogateescape: a file name that is not UTF-8 is written as its bytes, read back whole
        with os.fdopen(handle, "w", newline="", encoding="utf-8", errors="surrogateescape") as out:
            writer = csv.writer(out)
            writer.writerow(CSV_COLUMNS)
            for r in records:
                label_str = LABEL_NAMES[r.label]
                writer.writerow([str(r.path), r.label, label_str, r.source, r.group, r.split or ""])
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a split file is shared like any other
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_split_csv(path: str | os.PathLike) -> list[ImageRecord]:
    """Read a CSV written by `write_split_csv`; relative paths are taken from the CSV's folder."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
            reader = csv.reader(handle)
            header = [c.strip() for c in next(reader, [])]
            if tuple(header) != CSV_COLUMNS:
                got = ",".join(header) if header else "an empty file"
                raise DataError(f"{path}: expected header {','.join(CSV_COLUMNS)}, got {got}")
            return [_split_row(row, path, reader.line_num) for row in reader if row]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: cannot read CSV: {err}") from err


def _split_row(row: list[str], csv_path: Path, line: int) -> ImageRecord:
    """Parse one data row of a split CSV."""
    where = f"{csv_path}, line {line}"
    if len(row) != len(CSV_COLUMNS):
        raise DataError(f"{where}: expected {len(CSV_COLUMNS)} fields, got {len(row)}")
    image, label, label_str, source, group, split = (field.strip() for field in row)
    if label not in ("0", "1") or LABEL_NAMES[int(label)] != label_str:
        raise DataError(
            f"{where}: label {label!r} with label_str {label_str!r}, expected 0,real or 1,fake"
        )
    if split and split not in SPLITS:
        raise DataError(f"{where}: unknown split {split!r}, expected {', '.join(SPLITS)} or empty")
    if not image or not source or not group:
        raise DataError(f"{where}: empty path, source or group")
    resolved = Path(os.path.abspath(csv_path.parent / image))  # an absolute path stays as it is
    return ImageRecord(resolved, int(label), source, group, split or None)
