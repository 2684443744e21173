"""Audit a dataset for the problems that let a detector cheat: shortcuts and near-duplicates.

A real/fake classifier learns whatever separates the classes most easily. When the reals are
PNG and the fakes JPEG, or every fake has one size, that is the file format or the size, not
the face, and the model fails on the first JPEG photograph it meets. The same photo on both
sides of a train/test split inflates the scores. The audit looks at every file's bytes (never
its name) and reports:

- per image: true format, extension mismatch, size, mode, JPEG quality, file size, and a
  perceptual hash (`ImageFacts`);
- shortcuts: attributes that alone predict the class (`find_shortcuts`);
- near-duplicates: clusters of images with close perceptual hashes (`find_near_duplicates`),
  flagged when they cross splits, classes or sources; `apply_groups` turns them into split
  groups so that `make_split` keeps each cluster on one side.

Label convention: real = 0, fake = 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from deepfake_detect.checkpoint import atomic_write_json
from deepfake_detect.datasets import LABEL_NAMES, SPLITS, ImageRecord, index_dataset
from deepfake_detect.errors import DataError, ImageError
from deepfake_detect.images import (
    MAX_IMAGE_PIXELS,
    SNIFF_BYTES,
    load_image,
    open_quietly,
    read_image_bytes,
    sniff_format,
)

AUDIT_VERSION = 1
"""Part of the cache key: bump it whenever the facts of an image would come out differently."""

HASH_SIZE = 8
"""The perceptual hash keeps HASH_SIZE x HASH_SIZE low frequencies: 64 bits."""

FINE_HASH_SIZE = 16
"""The confirming hash keeps 16 x 16 low frequencies of the same DCT: 256 bits."""

FINE_DISTANCE_SCALE = 5
"""A near-duplicate pair must also be within FINE_DISTANCE_SCALE * max_distance on the fine hash.

Measured on ../shared/data (5,247 aligned faces): the 100 true cross-source pairs are within
2 bits of 64 and 6 of 256, but 68 unrelated pairs are within 6 of 64, since aligned faces share
their coarsest structure; alone, the 64-bit threshold chains them into clusters (one of 62
faces at 8 bits, of 1,188 at 10). Of those 68, none comes within 44 bits of 256 (no unrelated
pair at all within 36), so 30 rejects them while keeping every true pair, and faces resized,
re-encoded at quality 20, blurred, brightened by 20% or cropped by 1% (all within 32 bits).
The fine hash needs the mid-frequency detail photos have: copies of flat, very smooth images
may be missed.
"""

ATTRIBUTES = ("format", "size", "mode", "jpeg_quality", "extension_mismatch")
"""The categorical attributes that `find_shortcuts` tests, besides the continuous file size."""

EXTENSION_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".gif": "GIF",
}

# A bucket is compared in blocks of rows so that no block holds more distances than this: a
# bucket of 50,000 distinct hashes would otherwise need a 2.5 billion-entry matrix.
_BLOCK_ELEMENTS = 4_000_000
_DCT_SIZE = 32  # the thumbnail the DCT runs on, as in the usual pHash
# JPEGs are decoded at 1/2 .. 1/8 scale (DCT scaling in libjpeg) down to at least this size.
# Measured on ../shared/data (256 and 128 px), hashes barely move (true pairs stay within 2
# bits) and the audit takes 2.1 s instead of 2.5 s; for large photos the saving is several-fold.
_DRAFT_SIZE = 64
_TOP_VALUES = 5  # how many sizes the summary lists per source and class

# The JPEG standard's luminance quantisation table (ITU T.81, Annex K.1), in natural order.
_BASE_LUMINANCE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.int64,
).ravel()


def _zigzag_order() -> np.ndarray:
    """Natural (row-major) index of each coefficient in JPEG zigzag order."""

    def key(index: int) -> tuple[int, int]:
        row, col = divmod(index, 8)
        diagonal = row + col
        # Odd diagonals run down-left (row increasing), even ones up-right.
        return (diagonal, row if diagonal % 2 else -row)

    return np.array(sorted(range(64), key=key))


def _quality_tables() -> np.ndarray:
    """Luminance tables libjpeg writes for qualities 1..100, shape (100, 64), natural order."""
    qualities = np.arange(1, 101)
    scales = np.where(qualities < 50, 5000 // qualities, 200 - 2 * qualities)
    tables = (_BASE_LUMINANCE[None, :] * scales[:, None] + 50) // 100
    return np.clip(tables, 1, 255)  # 255: libjpeg's baseline limit, which PIL always uses


_ZIGZAG = _zigzag_order()
_QUALITY_TABLES = _quality_tables()


def _dct_matrix(size: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: `m @ x` transforms a column vector."""
    k = np.arange(size)
    matrix = np.sqrt(2 / size) * np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * size))
    matrix[0] /= np.sqrt(2)
    return matrix


_DCT = _dct_matrix(_DCT_SIZE)


# ---------------------------------------------------------------------------------------------
# Facts of one image


@dataclass
class ImageFacts:
    """What the bytes of one image say about it; `error` is set when it cannot be read."""

    path: str
    label: int
    source: str
    split: str | None
    format: str | None = None
    extension: str = ""
    extension_mismatch: bool = False
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    jpeg_quality: int | None = None
    file_size: int = 0
    phash: str | None = None
    error: str | None = None
    fine_hash: str | None = None  # 256-bit pHash (64 hex chars) that confirms near-duplicates

    @property
    def size(self) -> str | None:
        """Width x height as text ("128x128"), None when unknown."""
        return None if self.width is None else f"{self.width}x{self.height}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageFacts:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def image_facts(record: ImageRecord) -> ImageFacts:
    """The facts of one image; an unreadable file gives facts with `error` set, never raises."""
    facts = ImageFacts(
        path=str(record.path),
        label=record.label,
        source=record.source,
        split=record.split,
        extension=record.path.suffix.lower(),
    )
    try:
        data = read_image_bytes(record.path)
        facts.file_size = len(data)
        _read_facts(facts, data, record.path)
    except ImageError as exc:
        facts.error = str(exc)
    return facts


def _read_facts(facts: ImageFacts, data: bytes, path: Path) -> None:
    """Fill the format, header and hash fields from the file's bytes."""
    facts.format = sniff_format(data[:SNIFF_BYTES])
    expected = EXTENSION_FORMATS.get(facts.extension)
    facts.extension_mismatch = facts.format is not None and expected != facts.format
    header = _open_header(data, facts.format)
    if header is None:
        image = load_image(path)  # raises the loader's own ImageError, which names the file
    else:
        with header:
            _read_header(facts, header)
            image = _load_small(header, path)
    coefficients = _low_frequencies(image)
    facts.phash = f"{_hash_bits(coefficients, HASH_SIZE):016x}"
    facts.fine_hash = f"{_hash_bits(coefficients, FINE_HASH_SIZE):064x}"


def _open_header(data: bytes, image_format: str | None) -> Image.Image | None:
    """The image opened lazily (header only), or None when PIL cannot open it."""
    if image_format is None:
        return None
    try:
        return open_quietly(data, image_format)
    except Exception:  # noqa: BLE001 - any failure: load_image then says why, in its words
        return None


def _read_header(facts: ImageFacts, header: Image.Image) -> None:
    """Size and mode as stored in the file, and the JPEG quality from its tables."""
    facts.width, facts.height = header.size
    facts.mode = header.mode
    if facts.format == "JPEG":
        facts.jpeg_quality = estimate_jpeg_quality(getattr(header, "quantization", None) or {})


def _load_small(header: Image.Image, path: Path) -> Image.Image:
    """Decode the image for hashing, a JPEG at reduced scale; ImageError when unreadable."""
    width, height = header.size
    if header.format == "JPEG" and width * height <= MAX_IMAGE_PIXELS:
        # The pixel check comes first so that an image the loader refuses is unreadable
        # here too, rather than slipping through at 1/8 scale.
        header.draft("RGB", (_DRAFT_SIZE, _DRAFT_SIZE))
        try:
            return load_image(header)
        except ImageError:
            pass  # reload below: the loader's message then names the file, not "<image>"
    return load_image(path)


def estimate_jpeg_quality(quantization: dict[int, Sequence[int]]) -> int | None:
    """The libjpeg quality (1-100) whose luminance table is closest to table 0, None if absent.

    Exact for files written by libjpeg and its descendants (PIL, OpenCV, most cameras' JPEG
    libraries); for other encoders it is the nearest libjpeg equivalent. Tables are matched in
    both natural and zigzag order, since Pillow versions differ in which they return.
    """
    table = quantization.get(0) if quantization else None
    if table is None or len(table) != 64:
        return None
    observed = np.asarray(list(table), dtype=np.int64)
    natural = np.abs(_QUALITY_TABLES - observed).sum(axis=1)
    zigzag = np.abs(_QUALITY_TABLES[:, _ZIGZAG] - observed).sum(axis=1)
    return int(np.argmin(np.minimum(natural, zigzag))) + 1


# ---------------------------------------------------------------------------------------------
# Perceptual hash


def perceptual_hash(image: Image.Image, hash_size: int = HASH_SIZE) -> int:
    """pHash of an image: hash_size**2 bits (64 by default) as an int, first bit most significant.

    Grey levels, a 32 x 32 box-filtered thumbnail, its 2-D DCT; each of the hash_size x
    hash_size lowest frequencies gives a bit, set when the coefficient is above the median of
    them all but the DC term (the mean brightness). Robust to resizing, re-encoding, blur and
    mild colour changes; not to crops, shifts or flips.
    """
    if not 2 <= hash_size <= _DCT_SIZE:
        raise ValueError(f"hash_size must be within 2..{_DCT_SIZE}, got {hash_size}")
    return _hash_bits(_low_frequencies(image), hash_size)


def _low_frequencies(image: Image.Image) -> np.ndarray:
    """The 32 x 32 DCT-II of the image's grey-level thumbnail."""
    grey = image.convert("L").resize((_DCT_SIZE, _DCT_SIZE), Image.Resampling.BOX)
    pixels = np.asarray(grey, dtype=np.float64)
    return _DCT @ pixels @ _DCT.T


def _hash_bits(coefficients: np.ndarray, hash_size: int) -> int:
    """Bits of the top-left hash_size x hash_size block, row-major, against its median."""
    block = coefficients[:hash_size, :hash_size].ravel()
    bits = block > np.median(block[1:])
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hamming_distance(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()


# ---------------------------------------------------------------------------------------------
# Near-duplicates


def find_near_duplicates(
    hashes: Sequence[int | None],
    max_distance: int = 6,
    *,
    fine_hashes: Sequence[int | None] | None = None,
    fine_distance: int | None = None,
) -> list[list[int]]:
    """Clusters of indices whose 64-bit hashes are within max_distance bits, transitively.

    Only clusters of two or more are returned, each sorted, ordered by their first index.
    Indices whose hash is None are left out. With `fine_hashes` (256-bit), a pair must also be
    within `fine_distance` (default FINE_DISTANCE_SCALE * max_distance) on those, and an
    index without a fine hash is left out.

    Multi-index hashing, not all pairs: the 64 bits are cut into max_distance + 1 bands, and two
    hashes within max_distance agree exactly on at least one band (pigeonhole), so only hashes
    that share a (band, value) bucket are compared. Identical codes are merged before that, so
    a thousand copies of one blank image cost one comparison, not half a million.
    """
    if not 0 <= max_distance < 64:
        raise ValueError(f"max_distance must be within 0..63, got {max_distance}")
    indices, codes = _hash_codes(hashes, fine_hashes)
    if len(indices) < 2:
        return []
    unique, owner = np.unique(codes, axis=0, return_inverse=True)
    owner = owner.ravel()  # numpy 2.0 to 2.1 give it the shape of the axis-0 input
    limit = FINE_DISTANCE_SCALE * max_distance if fine_distance is None else fine_distance
    pairs = _close_pairs(unique, max_distance, limit if fine_hashes is not None else None)
    roots = _union_find(len(unique), pairs)
    return _clusters(indices, roots[owner])


def _hash_codes(
    hashes: Sequence[int | None], fine_hashes: Sequence[int | None] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices with hashes, and their codes as uint64 rows: [hash] or [hash, fine (4 words)]."""
    if fine_hashes is not None and len(fine_hashes) != len(hashes):
        raise ValueError("hashes and fine_hashes must have the same length")
    fines = fine_hashes if fine_hashes is not None else [0] * len(hashes)
    kept = [
        i
        for i, (h, f) in enumerate(zip(hashes, fines, strict=True))
        if h is not None and f is not None
    ]
    words = 1 if fine_hashes is None else 5
    codes = np.zeros((len(kept), words), dtype=np.uint64)
    for row, index in enumerate(kept):
        codes[row, 0] = hashes[index]
        for word in range(1, words):
            codes[row, word] = (fines[index] >> (64 * (4 - word))) & 0xFFFF_FFFF_FFFF_FFFF
    return np.array(kept, dtype=np.int64), codes


def _bands(max_distance: int) -> list[tuple[int, int]]:
    """(shift, width) of max_distance + 1 bands that tile the 64 bits, widths differing by 1."""
    count = max_distance + 1
    widths = [64 // count + (1 if band < 64 % count else 0) for band in range(count)]
    shifts = np.cumsum([0, *widths[:-1]])
    return [(int(shift), width) for shift, width in zip(shifts, widths, strict=True)]


def _close_pairs(codes: np.ndarray, max_distance: int, fine_limit: int | None) -> np.ndarray:
    """Row pairs (i < j) of distinct `codes` within the distances, found bucket by bucket."""
    found: list[np.ndarray] = [np.empty((0, 2), dtype=np.int64)]
    keys = codes[:, 0]
    for shift, width in _bands(max_distance):
        values = (keys >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        order = np.argsort(values, kind="stable")
        starts = np.flatnonzero(np.r_[True, values[order][1:] != values[order][:-1], True])
        for start, stop in zip(starts[:-1], starts[1:], strict=True):
            if stop - start > 1:
                found.append(_bucket_pairs(codes, order[start:stop], max_distance, fine_limit))
    pairs = np.concatenate(found)
    return np.unique(pairs, axis=0) if len(pairs) else pairs  # a pair may share several bands


def _bucket_pairs(
    codes: np.ndarray, members: np.ndarray, max_distance: int, fine_limit: int | None
) -> np.ndarray:
    """Close pairs within one bucket, all against all, in row blocks to bound the memory."""
    members = np.sort(members)
    keys = codes[:, 0]
    block = max(1, _BLOCK_ELEMENTS // len(members))
    found = []
    for start in range(0, len(members), block):
        rows = members[start : start + block]
        close = _popcount(keys[rows, None] ^ keys[None, members]) <= max_distance
        close &= rows[:, None] < members[None, :]
        r, c = np.nonzero(close)
        first, second = rows[r], members[c]
        if fine_limit is not None:  # only the few coarse matches pay for the 256-bit test
            fine = _popcount(codes[first, 1:] ^ codes[second, 1:]).sum(axis=1)
            first, second = first[fine <= fine_limit], second[fine <= fine_limit]
        found.append(np.stack([first, second], axis=1))
    return np.concatenate(found)


_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per uint64 element (np.bitwise_count exists from numpy 2.0 on)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    as_bytes = np.ascontiguousarray(words)[..., None].view(np.uint8)
    return _BYTE_BITS[as_bytes].sum(axis=-1)


def _union_find(count: int, pairs: np.ndarray) -> np.ndarray:
    """The root of each of `count` items after joining the pairs."""
    parent = list(range(count))

    def root(item: int) -> int:
        while parent[item] != item:
            parent[item] = parent[parent[item]]  # path halving keeps the trees flat
            item = parent[item]
        return item

    for a, b in pairs.tolist():
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(item) for item in range(count)], dtype=np.int64)


def _clusters(indices: np.ndarray, roots: np.ndarray) -> list[list[int]]:
    """Group indices by root; groups of two or more, sorted, by first index."""
    members: dict[int, list[int]] = defaultdict(list)
    for index, item_root in zip(indices.tolist(), roots.tolist(), strict=True):
        members[item_root].append(index)
    return sorted(sorted(group) for group in members.values() if len(group) > 1)


# ---------------------------------------------------------------------------------------------
# Shortcuts


@dataclass
class Shortcut:
    """An attribute that alone predicts the class: a detector can learn it instead of faces."""

    attribute: str
    scope: str
    balanced_accuracy: float
    detail: str


def find_shortcuts(facts: Sequence[ImageFacts], threshold: float = 0.9) -> list[Shortcut]:
    """Attributes whose value alone predicts the class with balanced accuracy >= threshold.

    Scopes: all images together, then each source alone (skipped when it is all images, or
    lacks a class). Unreadable images are left out. A categorical attribute predicts, for each
    image, the class that is more frequent (relative to class size) among the *other* images
    with its value; a tie counts half right. Leaving the image out means a value seen once
    predicts nothing, so attributes unique per image (sizes of uncropped photos) do not look
    perfect. The file size is scored by max(AUC, 1 - AUC): it always differs a little between
    classes, so a flagged file size deserves a look rather than alarm.
    """
    readable = [f for f in facts if f.error is None]
    found: list[Shortcut] = []
    for scope, members in _scopes(readable):
        for attribute in (*ATTRIBUTES, "file_size"):
            score, detail = _score(members, attribute)
            if score >= threshold:
                found.append(Shortcut(attribute, scope, round(score, 4), detail))
    return found


def _scopes(facts: list[ImageFacts]) -> list[tuple[str, list[ImageFacts]]]:
    """("all", everything) and (source, its images), each only when it has both classes."""
    scopes = [("all", facts)]
    sources = sorted({f.source for f in facts})
    if len(sources) > 1:
        scopes += [(s, [f for f in facts if f.source == s]) for s in sources]
    return [(name, members) for name, members in scopes if len({f.label for f in members}) == 2]


def _score(facts: list[ImageFacts], attribute: str) -> tuple[float, str]:
    """The attribute's predictive measure and a one-line description per class."""
    if attribute == "file_size":
        return _file_size_score(facts)
    values = [attribute_value(f, attribute) for f in facts]
    if len(set(values)) < 2:
        return 0.5, ""  # a single value separates nothing
    labels = [f.label for f in facts]
    return _leave_one_out_accuracy(values, labels), _value_detail(values, labels)


def attribute_value(facts: ImageFacts, attribute: str) -> str:
    """The attribute as text, the form used for counting ("PNG", "128x128", "q75", "none")."""
    if attribute == "size":
        value: Any = facts.size
    elif attribute == "jpeg_quality":
        value = None if facts.jpeg_quality is None else f"q{facts.jpeg_quality}"
    elif attribute == "extension_mismatch":
        value = "extension lies" if facts.extension_mismatch else "extension ok"
    else:
        value = getattr(facts, attribute)
    return "none" if value is None else str(value)


def _leave_one_out_accuracy(values: list[str], labels: list[int]) -> float:
    """Balanced accuracy of predicting each image's class from the others with its value."""
    totals = Counter(labels)
    counts = Counter(zip(values, labels, strict=True))
    right = {0: 0.0, 1: 0.0}
    for value in set(values):
        n = {label: counts[value, label] for label in (0, 1)}
        for label in (0, 1):
            other = 1 - label
            # Compare class rates n/total, cross-multiplied to stay in integers.
            own = (n[label] - 1) * totals[other]
            rival = n[other] * totals[label]
            right[label] += n[label] * (1.0 if own > rival else 0.5 if own == rival else 0.0)
    return (right[0] / totals[0] + right[1] / totals[1]) / 2


def _value_detail(values: list[str], labels: list[int]) -> str:
    """Text like "real: PNG 100%; fake: JPEG 99%, PNG 1%": the top three values per class."""
    parts = []
    for label in (0, 1):
        counts = Counter(v for v, lab in zip(values, labels, strict=True) if lab == label)
        total = sum(counts.values())
        top = ", ".join(f"{v} {100 * n / total:.0f}%" for v, n in counts.most_common(3))
        parts.append(f"{LABEL_NAMES[label]}: {top}")
    return "; ".join(parts)


def _file_size_score(facts: list[ImageFacts]) -> tuple[float, str]:
    """max(AUC, 1 - AUC) of the file size as a score for "fake", and the medians."""
    labels = [f.label for f in facts]
    sizes = [f.file_size for f in facts]
    auc = float(roc_auc_score(labels, sizes))
    medians = [
        f"{LABEL_NAMES[label]}: median {_kilobytes(_median_size(facts, label))}" for label in (0, 1)
    ]
    return max(auc, 1 - auc), f"{'; '.join(medians)} (AUC {auc:.2f})"


def _median_size(facts: Iterable[ImageFacts], label: int) -> float:
    return statistics.median(f.file_size for f in facts if f.label == label)


def _kilobytes(size: float) -> str:
    return f"{size / 1000:.1f} kB"


# ---------------------------------------------------------------------------------------------
# The report


@dataclass
class AuditReport:
    """Everything the audit found; `to_dict` for JSON, `format_text` for the terminal."""

    facts: list[ImageFacts]
    groups: dict[str, str]
    duplicate_clusters: list[dict]
    shortcuts: list[Shortcut]
    threshold: float = 0.9
    max_distance: int = 6
    unreadable: list[dict] = field(init=False)

    def __post_init__(self) -> None:
        self.unreadable = [{"path": f.path, "error": f.error} for f in self.facts if f.error]

    def summary(self) -> dict[str, Any]:
        """Counts per class, source and split; attribute counts per source and class;
        duplicates by kind. JSON-ready."""
        return {
            "images": len(self.facts),
            "unreadable": len(self.unreadable),
            "counts": _count_rows(self.facts),
            "sources": _attribute_tables(self.facts),
            "duplicates": _duplicate_counts(self.duplicate_clusters),
        }

    def to_dict(self, include_images: bool = False) -> dict[str, Any]:
        """The summary, shortcuts, duplicate clusters and unreadable files (and every image's
        facts with include_images), as plain JSON types."""
        data = {
            "summary": self.summary(),
            "shortcuts": [dataclasses.asdict(s) for s in self.shortcuts],
            "duplicates": self.duplicate_clusters,
            "unreadable": self.unreadable,
        }
        if include_images:
            data["images"] = [f.to_dict() for f in self.facts]
        return data

    def format_text(self) -> str:
        """A multi-line report for the terminal; each shortcut on a loud "SHORTCUT:" line."""
        summary = self.summary()
        lines = _header_lines(summary)
        lines += _attribute_lines(summary["sources"])
        lines += _duplicate_lines(summary["duplicates"], self.duplicate_clusters)
        lines += [f"unreadable: {u['path']}: {u['error']}" for u in self.unreadable[:10]]
        lines += _shortcut_lines(self.shortcuts, self.threshold)
        return "\n".join(lines)


def _count_rows(facts: Sequence[ImageFacts]) -> list[dict[str, Any]]:
    """Rows {"source", "split", "class", "count"} sorted by source, split, class."""
    counts = Counter((f.source, f.split, f.label) for f in facts)

    def key(item: tuple[str, str | None, int]) -> tuple[str, int, int]:
        source, split, label = item
        return (source, SPLITS.index(split) if split in SPLITS else len(SPLITS), label)

    rows = []
    for source, split, label in sorted(counts, key=key):
        count = counts[source, split, label]
        rows.append({"source": source, "split": split, "class": LABEL_NAMES[label], "count": count})
    return rows


def _attribute_tables(facts: Sequence[ImageFacts]) -> dict[str, dict[str, dict]]:
    """{source: {class: {format, size, mode, jpeg_quality counts, mismatches, file_size}}}."""
    tables: dict[str, dict[str, dict]] = {}
    for source in sorted({f.source for f in facts}):
        tables[source] = {}
        for label in (0, 1):
            members = [f for f in facts if f.source == source and f.label == label]
            if members:
                tables[source][LABEL_NAMES[label]] = _class_table(members)
    return tables


def _class_table(facts: list[ImageFacts]) -> dict[str, Any]:
    """Attribute counts of the readable images of one source and class."""
    readable = [f for f in facts if f.error is None]
    table: dict[str, Any] = {"images": len(facts), "unreadable": len(facts) - len(readable)}
    for attribute in ("format", "size", "mode", "jpeg_quality"):
        counts = Counter(attribute_value(f, attribute) for f in readable)
        limit = _TOP_VALUES if attribute == "size" else None
        table[attribute] = dict(counts.most_common(limit))
    table["extension_mismatches"] = sum(f.extension_mismatch for f in readable)
    sizes = [f.file_size for f in readable]
    if sizes:
        table["file_size"] = {
            "min": min(sizes),
            "median": statistics.median(sizes),
            "max": max(sizes),
        }
    return table


def _duplicate_counts(clusters: Sequence[dict]) -> dict[str, int]:
    """How many clusters there are, how many images they hold, and how many cross what."""
    counts = {
        "clusters": len(clusters),
        "images": sum(len(c["paths"]) for c in clusters),
        "within": sum(
            not (c["cross_split"] or c["cross_class"] or c["cross_source"]) for c in clusters
        ),
    }
    for kind in ("cross_split", "cross_class", "cross_source"):
        counts[kind] = sum(c[kind] for c in clusters)
    return counts


def _header_lines(summary: dict[str, Any]) -> list[str]:
    lines = [f"Audit of {summary['images']} images, {summary['unreadable']} unreadable"]
    for row in summary["counts"]:
        split = row["split"] or "unsplit"
        lines.append(f"  {row['source']:<24} {split:<8} {row['class']:<5} {row['count']:>7}")
    return lines


def _attribute_lines(tables: dict[str, dict[str, dict]]) -> list[str]:
    lines = []
    for source, classes in tables.items():
        for name, table in classes.items():
            lines.append(f"{source} / {name}:")
            for attribute in ("format", "size", "mode", "jpeg_quality"):
                lines.append(f"    {attribute:<21} {_counts_text(table[attribute])}")
            lines.append(f"    {'extension mismatches':<21} {table['extension_mismatches']}")
            if "file_size" in table:
                sizes = "/".join(_kilobytes(table["file_size"][k]) for k in ("min", "median"))
                sizes += f"/{_kilobytes(table['file_size']['max'])}"
                lines.append(f"    {'file size min/med/max':<21} {sizes}")
    return lines


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{value} {count}" for value, count in counts.items()) or "-"


def _duplicate_lines(counts: dict[str, int], clusters: Sequence[dict]) -> list[str]:
    lines = [
        f"Near-duplicates: {counts['clusters']} clusters, {counts['images']} images; "
        f"cross-split {counts['cross_split']}, cross-class {counts['cross_class']}, "
        f"cross-source {counts['cross_source']}, within {counts['within']}"
    ]
    for cluster in clusters[:5]:
        lines.append(f"    {cluster['group']}: " + ", ".join(cluster["paths"][:3]))
    return lines


def _shortcut_lines(shortcuts: Sequence[Shortcut], threshold: float) -> list[str]:
    if not shortcuts:
        return [f"No shortcut found (balanced accuracy threshold {threshold:.2f})."]
    lines = []
    for s in shortcuts:
        lines.append(
            f"SHORTCUT: {s.attribute} predicts the class in {s.scope} "
            f"(balanced accuracy {s.balanced_accuracy:.2f}): {s.detail}"
        )
        if s.attribute == "file_size":
            lines.append("    file sizes also follow content; check format and quality first")
    return lines


# ---------------------------------------------------------------------------------------------
# Running the audit


def audit_records(
    records: Sequence[ImageRecord],
    *,
    max_distance: int = 6,
    threshold: float = 0.9,
    workers: int = 2,
    progress: bool = False,
) -> AuditReport:
    """Read every image's facts (in a thread pool), then find near-duplicates and shortcuts."""
    if not records:
        raise DataError("no images to audit")
    facts = compute_facts(records, workers=workers, progress=progress)
    return report_from_facts(facts, max_distance=max_distance, threshold=threshold)


def audit_dataset(
    roots: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any
) -> AuditReport:
    """Index the dataset folders (`index_dataset`) and audit them."""
    return audit_records(index_dataset(roots), **kwargs)


def compute_facts(
    records: Sequence[ImageRecord], *, workers: int = 2, progress: bool = False
) -> list[ImageFacts]:
    """`image_facts` of every record, in order; PIL releases the GIL while decoding."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(image_facts, records)
        return list(tqdm(results, total=len(records), desc="audit", disable=not progress))


def report_from_facts(
    facts: Sequence[ImageFacts], *, max_distance: int = 6, threshold: float = 0.9
) -> AuditReport:
    """Clusters and shortcuts from facts already computed (cheap: no file is read)."""
    facts = list(facts)
    clusters = find_near_duplicates(
        [_parse_hash(f.phash) for f in facts],
        max_distance,
        fine_hashes=[_parse_hash(f.fine_hash) for f in facts],
    )
    groups, described = _describe_clusters(facts, clusters)
    shortcuts = find_shortcuts(facts, threshold)
    return AuditReport(facts, groups, described, shortcuts, threshold, max_distance)


def _parse_hash(text: str | None) -> int | None:
    return None if text is None else int(text, 16)


def _describe_clusters(
    facts: list[ImageFacts], clusters: list[list[int]]
) -> tuple[dict[str, str], list[dict]]:
    """Group ids by path, and one JSON-ready dict per cluster, numbered by first path."""
    ordered = sorted(clusters, key=lambda c: min(facts[i].path for i in c))
    groups: dict[str, str] = {}
    described = []
    for number, cluster in enumerate(ordered):
        members = sorted((facts[i] for i in cluster), key=lambda f: f.path)
        group = f"dup-{number:06d}"
        groups.update((f.path, group) for f in members)
        described.append(_cluster_dict(group, members))
    return groups, described


def _cluster_dict(group: str, members: list[ImageFacts]) -> dict[str, Any]:
    splits = [f.split for f in members]
    return {
        "group": group,
        "paths": [f.path for f in members],
        "labels": [f.label for f in members],
        "sources": [f.source for f in members],
        "splits": splits,
        # An unsplit image will follow its group into whichever split it gets: no leak.
        "cross_split": len({s for s in splits if s is not None}) > 1,
        "cross_class": len({f.label for f in members}) > 1,
        "cross_source": len({f.source for f in members}) > 1,
    }


def apply_groups(records: Sequence[ImageRecord], report: AuditReport) -> list[ImageRecord]:
    """The records, with the cluster's group for each near-duplicate, so `make_split` keeps
    every cluster on one side.

    A cluster whose members already sit in different splits (a fixed split that leaks) cannot
    be moved; its members get one group per split, "dup-000012/train", so that `make_split`
    still accepts them, and the report's cross_split flag is what tells the user.
    """
    by_group: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        if str(record.path) in report.groups:
            by_group[report.groups[str(record.path)]].append(record)
    renamed: dict[str, str] = {}
    for group, members in by_group.items():
        fixed = {r.split for r in members if r.split is not None}
        for r in members:
            renamed[str(r.path)] = group if len(fixed) < 2 else f"{group}/{r.split or 'unsplit'}"
    return [
        dataclasses.replace(r, group=renamed[str(r.path)]) if str(r.path) in renamed else r
        for r in records
    ]


# ---------------------------------------------------------------------------------------------
# Cache


def default_cache_dir() -> Path:
    """$DEEPFAKE_DETECT_CACHE, else $XDG_CACHE_HOME/deepfake-detect, else ~/.cache/..., + audit."""
    base = os.environ.get("DEEPFAKE_DETECT_CACHE")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        base = Path(xdg) / "deepfake-detect"
    return Path(base) / "audit"


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

    The key hashes every record's path, size and modification time with AUDIT_VERSION, so a
    changed, added or removed file computes everything again. Labels, sources and splits come
    from the records, not the cache: relabelling or resplitting needs no new reading.
    """
    if not records:
        raise DataError("no images to audit")
    path = Path(cache_dir or default_cache_dir()) / f"{_cache_key(records)}.json"
    facts = _load_cached_facts(path, records)
    if facts is None:
        facts = compute_facts(records, workers=workers, progress=progress)
        _save_cached_facts(path, facts)
    return report_from_facts(facts, max_distance=max_distance, threshold=threshold)


def _cache_key(records: Sequence[ImageRecord]) -> str:
    digest = hashlib.sha256(f"deepfake-detect audit {AUDIT_VERSION}\n".encode())
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
