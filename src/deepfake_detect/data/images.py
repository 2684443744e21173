"""The one image loader used for training, evaluation and prediction.

Every image the detector sees goes through `load_image` and `preprocess`, so a face is turned
into the same numbers whether it is read for training or for a prediction. The loader is
strict on purpose: a file it cannot read completely is an `ImageError`, never a half-decoded
picture, because a grey band where a truncated JPEG ends is exactly the kind of artefact a
real/fake classifier would learn from.
"""

from __future__ import annotations

import functools
import io
import os
import re
import struct
import warnings
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageOps

from deepfake_detect.errors import ImageError, ImageTooLargeError, UnsupportedImageError

MAX_IMAGE_PIXELS: int = 40_000_000
"""Default limit on width * height, checked before any pixel is decoded (decompression bombs).
Phone photos of 48-200 megapixels need more: `set_max_pixels`, `--max-pixels` on the command
line, or the environment variable `MAX_PIXELS_ENV` (for a service)."""

MAX_PIXELS_ENV = "DEEPFAKE_DETECT_MAX_PIXELS"

MAX_FILE_BYTES: int = 512 * 1024 * 1024
"""Largest image file read at all: a file is read whole, so a bigger one is refused unread."""

SUPPORTED_FORMATS: frozenset[str] = frozenset(
    {"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "AVIF", "HEIF"}
)
"""PIL format names that `load_image` accepts; everything else is refused by its magic bytes.
AVIF needs a Pillow built with libavif (its wheels since 11.3), HEIF (HEIC) the `heif` extra."""

SNIFF_BYTES: int = 32
"""How many leading bytes `sniff_format` needs to see (BMP's DIB header size ends at 18)."""

_UNSUPPORTED = "unsupported image format (not JPEG, PNG, WebP, BMP, TIFF, GIF, AVIF or HEIC)"
HEIF_HINT = "HEIC/HEIF images need the heif extra: pip install 'deepfake-detect[heif]'"

# ISO base media files (HEIF, AVIF) open with an 'ftyp' box: size, b"ftyp", the major brand,
# a minor version, then compatible brands. These brands name still images of each kind.
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})

# Sizes of the DIB header that follows a BMP file header. Checking it as well as the two-byte
# "BM" signature keeps a text file that happens to start with "BM" from counting as a bitmap.
_BMP_DIB_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})

# Little- and big-endian classic TIFF, then BigTIFF (which Pillow also reads).
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

# What Pillow's decoders raise on malformed input. The list is wider than OSError because
# several plugins let struct, index and key errors escape from a broken header; anything
# else is left to propagate as the bug it would be.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    struct.error,
)

# libjpeg's warnings about scan data that stops or breaks (JWRN_HIT_MARKER, JWRN_JPEG_EOF,
# JWRN_HUFF_BAD_CODE, JWRN_MUST_RESYNC...), and the one of them that loses no pixel.
_JPEG_BROKEN = ("Corrupt JPEG data", "Premature end of JPEG file")
_JPEG_HARMLESS = "extraneous bytes before marker"
_JPEG_END_MARKER = "marker 0xd9"

_max_pixels: int | None = None  # set_max_pixels; None: the environment's, else the default
_ENV_AT_IMPORT = os.environ.get(MAX_PIXELS_ENV)

_INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

# Transparent pixels are composited onto white: it is how browsers and viewers show such
# images, so it is what whoever labelled the picture saw. The colour hidden under alpha 0 is
# arbitrary (often black, sometimes leftover content) and must not reach the model.
_ALPHA_BACKGROUND = (255, 255, 255, 255)
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Image.Image


def sniff_format(head: bytes) -> str | None:
    """PIL format name from the file's first bytes (magic numbers), None if unknown.

    `SNIFF_BYTES` bytes are enough for every supported format; fewer simply match less.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(_TIFF_SIGNATURES):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brands = [head[8:12]] + [head[i : i + 4] for i in range(16, len(head) - 3, 4)]
        if any(brand in _AVIF_BRANDS for brand in brands):
            return "AVIF"
        if any(brand in _HEIF_BRANDS for brand in brands):
            return "HEIF"
        return None
    if head.startswith(b"BM") and len(head) >= 18:
        dib_header_size = int.from_bytes(head[14:18], "little")
        if dib_header_size in _BMP_DIB_HEADER_SIZES:
            return "BMP"
    return None


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """Read a whole file; a missing, unreadable or directory path is an `ImageError`."""
    name = _path_name(path)
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            _check_file_size(name, size)
            data = read_to_limit(file, size)
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory, not an image file") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot read file ({_reason(exc)})") from None
    _check_file_size(name, len(data))  # it may have grown since fstat
    return data


def read_to_limit(file: BinaryIO, expected: int = 1 << 20) -> bytes:
    """A binary file read to its end, or to one byte over `MAX_FILE_BYTES` (which tells a file
    too large), asking for `expected` + 1 bytes first and then for 16 MiB at a time.

    Never `read(MAX_FILE_BYTES + 1)` at once: Python allocates the size asked for, so every
    image cost a 512 MiB mapping that the kernel made and unmapped, and an unmapping stalls the
    process's other threads (two threads loaded faces140k's files no faster than one: 0.32 ms
    per image either way, 0.21 ms with the reads sized). A text-mode file is a `TypeError`.
    """
    chunks: list[bytes] = []
    total, ask = 0, expected + 1
    while total <= MAX_FILE_BYTES:
        chunk = file.read(min(ask, MAX_FILE_BYTES + 1 - total))
        if not isinstance(chunk, bytes | bytearray):
            raise TypeError("file is open in text mode, not binary")
        if not chunk:
            break
        chunks.append(bytes(chunk))
        total += len(chunk)
        ask = 16 << 20
    return b"".join(chunks)


def _check_file_size(name: str, size: int) -> None:
    if size > MAX_FILE_BYTES:
        raise ImageTooLargeError(
            f"{name}: file is {size / 2**20:.0f} MiB, over the limit of "
            f"{MAX_FILE_BYTES / 2**20:.0f} MiB for an image"
        )


def open_quietly(data: bytes, image_format: str) -> Image.Image:
    """`Image.open` on bytes, header only, without Pillow's DecompressionBombWarning: the
    callers refuse oversized images themselves, in one line (Pillow's own error still rises
    for images over twice its limit)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=[image_format])


def set_max_pixels(limit: int | None) -> None:
    """Set the pixel limit of every later `load_image` call that gives none; None restores the
    default (`MAX_PIXELS_ENV` when set, else `MAX_IMAGE_PIXELS`)."""
    global _max_pixels
    _max_pixels = _check_limit(limit) if limit is not None else None
    # Worker processes started by spawn or forkserver re-import this module: the environment
    # carries the limit to them. None gives back what the environment held before.
    if _max_pixels is not None:
        os.environ[MAX_PIXELS_ENV] = str(_max_pixels)
    elif _ENV_AT_IMPORT is None:
        os.environ.pop(MAX_PIXELS_ENV, None)
    else:
        os.environ[MAX_PIXELS_ENV] = _ENV_AT_IMPORT


def max_pixels_limit() -> int:
    """The pixel limit in force: `set_max_pixels`, else the environment, else the default."""
    if _max_pixels is not None:
        return _max_pixels
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return MAX_IMAGE_PIXELS
    try:
        return _check_limit(int(float(raw)))
    except (ValueError, OverflowError):
        message = f"{MAX_PIXELS_ENV}={raw!r}: expected a positive number of pixels"
        raise ValueError(message) from None


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or int(limit) != limit or limit <= 0:
        raise ValueError(f"max_pixels must be a positive whole number, got {limit}")
    return int(limit)


def load_image(source: ImageSource, *, max_pixels: int | None = None) -> Image.Image:
    """Decode an image completely into an RGB `Image` with its EXIF orientation applied.

    `source` is a path (str or PathLike), raw bytes, a binary file object (read from its
    current position), or a PIL Image (its first frame is used; its pixels are not changed).
    The format is detected from the bytes, never from the file name. Errors are `ImageError`
    with a one-line message that starts with the path as given ('<bytes>', '<image>', or
    '<file>' for a file object without a name).

    The result holds its own pixels: no file stays open and nothing is decoded lazily.
    `max_pixels` defaults to `max_pixels_limit()`.
    """
    if isinstance(source, Image.Image):
        if _is_closed(source):
            raise ImageError("<image>: the PIL image was closed before it was scored")
        return _decode(source, "<image>", _pixel_limit(max_pixels))
    name, data = read_source(source)
    return decode_image(name, data, max_pixels=max_pixels)


def _is_closed(image: Image.Image) -> bool:
    """Whether `Image.close()` was called: its pixels are gone (Pillow then raises a
    ValueError from any use, which read as a corrupt image)."""
    try:
        from PIL._util import DeferredError  # what Pillow puts where the pixels were
    except ImportError:  # another Pillow: then its own error message stands
        return False
    return isinstance(getattr(image, "_im", None), DeferredError)


def decode_image(name: str, data: bytes, *, max_pixels: int | None = None) -> Image.Image:
    """`load_image` for a file's bytes already read: errors start with `name`."""
    decoded = decode_pixels(name, data, max_pixels=max_pixels)
    return Image.fromarray(decoded) if isinstance(decoded, np.ndarray) else decoded


def decode_pixels(
    name: str, data: bytes, *, max_pixels: int | None = None
) -> Image.Image | np.ndarray:
    """`decode_image`, except that a plain JPEG stays the (H, W, 3) uint8 array that
    libjpeg-turbo decoded it into (`_decode_plain_jpeg`): the same pixels, without the copy
    into a PIL image and back (`model_input`)."""
    max_pixels = _pixel_limit(max_pixels)
    image_format = _detect_format(name, data)
    if image_format == "JPEG" and not _has_exif(data):
        plain = _decode_plain_jpeg_alone(name, data, max_pixels)
        if plain is not None:
            return plain
    image = _open(name, data, image_format, max_pixels)
    with image:
        if image_format == "JPEG":
            _check_size(image.size, name, max_pixels)
            plain = _decode_plain_jpeg(image, data)
            if plain is not None:
                return plain
            check_jpeg_complete(name, data)
        return _decode(image, name, max_pixels, owned=True)


def _decode_plain_jpeg_alone(name: str, data: bytes, max_pixels: int) -> np.ndarray | None:
    """`_decode_plain_jpeg` for a JPEG without EXIF (nothing to turn), its header read by
    libjpeg-turbo rather than by Pillow: Pillow's parser is Python that holds the GIL, which
    made two threads loading side by side 1.15 rather than 1.55 times as fast as one."""
    import simplejpeg

    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace not in ("YCbCr", "RGB", "Gray"):
        return None
    _check_size((width, height), name, max_pixels)
    return _libjpeg_pixels(data)


def _has_exif(data: bytes) -> bool:
    """Whether a JPEG's header segments hold EXIF; a header without a start of scan (a cut
    file) counts as holding it, so that the careful path reads, and refuses, it."""
    for marker, start, _ in _header_segments(data):
        if marker == 0xDA:
            return False
        if marker == 0xE1 and data[start + 4 : start + 10] == b"Exif\x00\x00":
            return True
    return True


def _decode_plain_jpeg(header: Image.Image, data: bytes) -> np.ndarray | None:
    """A colour or grey JPEG that needs no turning, decoded whole by libjpeg-turbo (through
    simplejpeg), or None: then Pillow decodes it and `check_jpeg_complete` reads it again.

    The same pixels as Pillow's (the same library, the same accurate IDCT and smooth chroma
    upsampling: equal on all 16,844 JPEGs of the shared folders), in half the time of the two
    reads, most of it without the GIL: a third of what loading a 256 px face cost. Anything
    that library reports, a warning included, leaves the file to the careful path, which
    refuses a cut file and accepts a harmless warning exactly as before; so do CMYK files,
    chroma layouts it cannot name, and photos whose EXIF asks to be turned.
    """
    if header.mode not in ("RGB", "L"):
        return None
    if header.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        return None
    return _libjpeg_pixels(data)


def _libjpeg_pixels(data: bytes) -> np.ndarray | None:
    """The JPEG decoded whole by libjpeg-turbo as (H, W, 3) RGB, or None if it reports
    anything, a warning included."""
    import simplejpeg

    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError:
        return None


def _pixel_limit(max_pixels: int | None) -> int:
    max_pixels = max_pixels_limit() if max_pixels is None else _check_limit(max_pixels)
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own bomb check must not refuse it first
    return max_pixels


def resize_image(
    image: Image.Image, size: int | tuple[int, int], interpolation: str = "bicubic"
) -> Image.Image:
    """Resize the whole image to `size` x `size` (or to `(width, height)`, PIL's order).

    There is no centre crop: the face crops this detector is trained on fill the frame, and
    cropping would throw away the edges where blending artefacts often sit. The aspect ratio
    is not kept, for the same reason.
    """
    width, height = (size, size) if isinstance(size, int) else size
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {size}")
    return image.resize((width, height), _resample(interpolation))


def to_tensor_array(image: Image.Image, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Float32 CHW array of an RGB image: pixels scaled to 0-1, then (x - mean) / std."""
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image (use load_image), got mode {image.mode}")
    return _normalised(np.asarray(image), mean, std)


def model_input(
    source: ImageSource,
    size: int | tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bicubic",
) -> np.ndarray:
    """`preprocess(load_image(source), ...)`, the same array, faster for a plain JPEG that is
    already `size`: its pixels go from libjpeg-turbo to the lookup without becoming a PIL
    image. That round trip (0.1 ms of a 256 px face's 0.55) holds the GIL: decoding and the
    lookup ran 1.8 times as fast on two threads as on one without it, 1.26 times with it."""
    if isinstance(source, Image.Image):
        return preprocess(load_image(source), size, mean, std, interpolation)
    return decoded_input(decode_pixels(*read_source(source)), size, mean, std, interpolation)


def decoded_input(
    decoded: Image.Image | np.ndarray,
    size: int | tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bicubic",
) -> np.ndarray:
    """`model_input` for what `decode_pixels` returned."""
    width, height = (size, size) if isinstance(size, int) else size
    if isinstance(decoded, np.ndarray) and decoded.shape[:2] == (height, width):
        return _normalised(decoded, mean, std)
    image = Image.fromarray(decoded) if isinstance(decoded, np.ndarray) else decoded
    return preprocess(image, size, mean, std, interpolation)


def _normalised(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(H, W, 3) uint8 pixels as the model's float32 CHW input."""
    tables = _lookup_tables(tuple(map(float, mean)), tuple(map(float, std)))
    out = np.empty((3, *pixels.shape[:2]), dtype=np.float32)
    for channel in range(3):
        # mode="clip" skips numpy's bounds check, which no uint8 index can fail, and with it
        # a slow path: six times faster for a 256 px image (1.4 ms to 0.2 ms), same values.
        np.take(tables[channel], pixels[..., channel], out=out[channel], mode="clip")
    return out


def preprocess(
    image: Image.Image,
    size: int | tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bicubic",
) -> np.ndarray:
    """`resize_image` then `to_tensor_array`: what the model receives for one image."""
    return to_tensor_array(resize_image(image, size, interpolation), mean, std)


def _path_name(path: str | os.PathLike) -> str:
    """The name an error message starts with: the path as the caller gave it, folders and all,
    so that `a/face.jpg` and `b/face.jpg` are told apart."""
    return os.fspath(path)


def _reason(exc: BaseException) -> str:
    """An exception as one line of text, for the parenthesised part of a message."""
    return " ".join(str(exc).split()) or type(exc).__name__


def read_source(source: ImageSource) -> tuple[str, bytes]:
    """The name for messages and the whole encoded file, whatever kind of source it is."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>", bytes(source)
    if isinstance(source, (str, os.PathLike)):
        return _path_name(source), read_image_bytes(source)
    if hasattr(source, "read"):
        return _read_file_object(source)
    raise TypeError(f"cannot load an image from {type(source).__name__}")


def _read_file_object(file: BinaryIO) -> tuple[str, bytes]:
    """Read a file object to its end; a text-mode file is refused rather than guessed at."""
    file_name = getattr(file, "name", None)
    name = _path_name(file_name) if isinstance(file_name, str) else "<file>"
    try:
        data = read_to_limit(file)
    except OSError as exc:
        raise ImageError(f"{name}: cannot read file ({_reason(exc)})") from None
    except TypeError:
        raise ImageError(f"{name}: file is open in text mode, not binary") from None
    _check_file_size(name, len(data))
    return name, data


def _detect_format(name: str, data: bytes) -> str:
    """The PIL format named by the magic bytes, or an `ImageError` naming the file."""
    if not data:
        raise ImageError(f"{name}: empty file")
    image_format = sniff_format(data[:SNIFF_BYTES])
    if image_format is None:
        raise UnsupportedImageError(f"{name}: {_UNSUPPORTED}")
    return image_format


def _open(name: str, data: bytes, image_format: str, max_pixels: int) -> Image.Image:
    """Read the header only; `formats` stops PIL trying decoders other than the sniffed one."""
    if image_format == "HEIF":
        _register_heif(name)
    elif image_format == "AVIF" and image_format not in Image.registered_extensions().values():
        raise UnsupportedImageError(
            f"{name}: AVIF image, but this Pillow cannot decode AVIF (upgrade it)"
        )
    try:
        return open_quietly(data, image_format)
    except Image.UnidentifiedImageError:
        raise ImageError(f"{name}: not a valid {image_format} file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow refuses images over twice its own MAX_IMAGE_PIXELS while opening them, before
        # their size reaches us, and warns above MAX_IMAGE_PIXELS (an exception where warnings
        # are errors). Its limit is never below ours (`_pixel_limit`), so the image is over
        # ours too: say so in our terms, with the pixel count its message gives.
        count = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(count[1])} pixels" if count else "too large to decode safely"
        raise ImageTooLargeError(
            f"{name}: image is {size}, over the limit of {max_pixels}{_RAISE_LIMIT}"
        ) from None
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{name}: corrupt or truncated image ({_reason(exc)})") from None


def _register_heif(name: str) -> None:
    """Pillow reads HEIC/HEIF through the optional pillow-heif plugin, registered on first use."""
    try:
        import pillow_heif
    except ImportError:
        raise UnsupportedImageError(f"{name}: {HEIF_HINT}") from None
    if "HEIF" not in Image.registered_extensions().values():
        pillow_heif.register_heif_opener()


def _decode(image: Image.Image, name: str, max_pixels: int, owned: bool = False) -> Image.Image:
    """Check the size, decode the first frame fully, orient it, and convert it to RGB.

    An image this module opened itself (`owned`) is oriented in place: Pillow would otherwise
    copy every unrotated image once more before the conversion to RGB copies it again (a
    quarter of a millisecond for a 256 px face, a third of its decoding). A caller's image is
    never changed."""
    _check_size(image.size, name, max_pixels)
    try:
        image.seek(0)
        image.load()
        if owned:
            ImageOps.exif_transpose(image, in_place=True)
            oriented = image
        else:
            oriented = ImageOps.exif_transpose(image)
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{name}: corrupt or truncated image ({_reason(exc)})") from None
    return _to_rgb(oriented, name)


def check_jpeg_complete(name: str, data: bytes) -> None:
    """Refuse a JPEG whose scan data stops before the image is complete.

    Pillow decodes a JPEG cut short but closed by an end-of-image marker without an error:
    libjpeg only warns ("premature end of data segment") and paints the missing blocks grey.
    Pillow drops that warning, so the entropy-coded data is decoded a second time by
    libjpeg-turbo through simplejpeg, which reports it, at 1/8 scale (every coefficient is
    still read, which is what finds the cut, at a small part of the cost). Pixel values are
    never looked at: a photo with a grey border is an image like any other. Warnings that
    leave the image whole (padding bytes before a marker, an odd JFIF version) are accepted,
    as every viewer accepts them.
    """
    import simplejpeg

    for attempt in range(2):
        try:
            simplejpeg.decode_jpeg(data, colorspace="GRAY", min_factor=8)
            return
        except ValueError as exc:
            reason = _reason(exc)
        if not reason.startswith(_JPEG_BROKEN):
            return  # a warning that loses no pixel (an odd JFIF version, a bogus progression)
        if _JPEG_HARMLESS not in reason:
            break
        if reason.endswith(_JPEG_END_MARKER):
            return  # bytes after the last scan, before the end marker: nothing is lost
        # Stray bytes between the header's segments: libjpeg stops at its first warning, so
        # drop them and read again, or a cut further on would go unseen.
        if attempt == 0:
            data = _without_header_padding(data)
    raise ImageError(f"{name}: corrupt or truncated image ({reason})")


def _without_header_padding(data: bytes) -> bytes:
    """The JPEG with the bytes that stand between its header segments (before the first scan)
    removed, as libjpeg itself skips them."""
    return data[:2] + b"".join(data[start:end] for _, start, end in _header_segments(data))


def _header_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, start, end) of each segment of a JPEG's header after its start-of-image
    marker, stepping over stray and fill bytes between them as libjpeg does; the last is the
    start of scan (0xDA), which runs to the end of the data, unless the file is cut first."""
    i = 2
    while i + 1 < len(data):
        if data[i] != 0xFF or data[i + 1] == 0xFF:
            i += 1  # a stray byte, or a fill byte before a marker
            continue
        marker = data[i + 1]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data and later markers
            yield marker, i, len(data)
            return
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            end = i + 2
        else:
            end = i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        yield marker, i, end
        i = end


def _check_size(size: tuple[int, int], name: str, max_pixels: int) -> None:
    """Refuse an image over the pixel limit; its size comes from the header, so nothing is
    decoded yet and a tiny file claiming enormous dimensions costs no memory."""
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: image is {width}x{height} pixels, over the limit of {max_pixels}"
            f"{_RAISE_LIMIT}"
        )


_RAISE_LIMIT = f" (--max-pixels or {MAX_PIXELS_ENV} raises it)"


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; the result is always a new image."""
    try:
        if image.mode == "I" or image.mode.startswith("I;16"):
            return _sixteen_bit_to_rgb(image)
        if _has_alpha(image):
            return _flatten_alpha(image)
        # Covers 1, L, P, RGB, CMYK, YCbCr, LAB, HSV and F. PIL reads F as 0-255, clipping
        # outside it, which is also how it converts F to L.
        return image.convert("RGB")
    except ValueError as exc:
        raise ImageError(f"{name}: unsupported pixel mode {image.mode} ({_reason(exc)})") from None


def _sixteen_bit_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16-bit grey to 8 bits by keeping the high byte (65535 -> 255, 32768 -> 128).

    PIL's own conversion clips instead, turning everything above 255 white. Mode I (32-bit)
    is treated as 16-bit too, since PIL reads 16-bit greyscale files as I in some versions
    and as I;16 in others; values outside 0-65535 are clipped.
    """
    values = np.asarray(image).astype(np.int64)
    high_byte = (np.clip(values, 0, 65535) >> 8).astype(np.uint8)
    return Image.fromarray(high_byte).convert("RGB")


def _has_alpha(image: Image.Image) -> bool:
    """Whether some pixels may be transparent: an alpha band, or a transparent colour or
    palette entry (`info["transparency"]`, as in GIFs and PNGs with a tRNS chunk)."""
    return image.mode in _ALPHA_MODES or "transparency" in image.info


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite an image with alpha or a transparent colour onto `_ALPHA_BACKGROUND`."""
    if image.mode == "La":
        # PIL has no direct La -> RGBA conversion; going through LA un-premultiplies it.
        image = image.convert("LA")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, _ALPHA_BACKGROUND)
    return Image.alpha_composite(background, rgba).convert("RGB")


def _resample(interpolation: str) -> Image.Resampling:
    """PIL's resampling filter for an interpolation name; unknown names are a ValueError."""
    try:
        return _INTERPOLATIONS[interpolation]
    except KeyError:
        known = ", ".join(sorted(_INTERPOLATIONS))
        raise ValueError(f"unknown interpolation {interpolation!r} (use {known})") from None


@functools.lru_cache(maxsize=8)
def _lookup_tables(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """For every 8-bit value and channel, the very float32 result of (value / 255 - mean) /
    std: one lookup per pixel then equals computing it, at a fraction of the passes over
    memory. Made once per normalisation (read-only: the cache hands out the same array)."""
    mean_array = _channel_values("mean", mean)
    std_array = _channel_values("std", std)
    if np.any(std_array == 0):
        raise ValueError(f"std must not contain zeros, got {list(std)}")
    values = np.arange(256, dtype=np.float32) / np.float32(255)
    tables = (values[None, :] - mean_array[:, None]) / std_array[:, None]
    tables.setflags(write=False)
    return tables


def _channel_values(label: str, values: Sequence[float]) -> np.ndarray:
    """Per-channel mean or std as a float32 array of three values."""
    array = np.asarray(values, dtype=np.float32)
    if array.shape != (3,):
        raise ValueError(f"{label} needs one value per RGB channel, got {list(values)}")
    return array
