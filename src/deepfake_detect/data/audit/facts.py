"""The facts of one image that the audit reads from its bytes (never its name): true format,
size, mode, JPEG quality, file size, and perceptual hashes."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deepfake_detect.data.datasets import ImageRecord
from deepfake_detect.data.images import (
    MAX_IMAGE_PIXELS,
    SNIFF_BYTES,
    load_image,
    open_quietly,
    read_image_bytes,
    sniff_format,
)
from deepfake_detect.errors import ImageError

AUDIT_VERSION = 1
"""Part of the cache key: bump it whenever the facts of an image would come out differently."""

HASH_SIZE = 8
"""The perceptual hash keeps HASH_SIZE x HASH_SIZE low frequencies: 64 bits."""

FINE_HASH_SIZE = 16
"""The confirming hash keeps 16 x 16 low frequencies of the same DCT: 256 bits."""

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

_DCT_SIZE = 32  # the thumbnail the DCT runs on, as in the usual pHash
# JPEGs are decoded at 1/2 .. 1/8 scale (DCT scaling in libjpeg) down to at least this size.
# Measured on ../shared/data (256 and 128 px), hashes barely move (true pairs stay within 2
# bits) and the audit takes 2.1 s instead of 2.5 s; for large photos the saving is several-fold.
_DRAFT_SIZE = 64


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
