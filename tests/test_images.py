"""Tests for the image loader: formats, modes, orientation, bad files and preprocessing."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from deepfake_detect.data import images
from deepfake_detect.data.images import (
    MAX_IMAGE_PIXELS,
    SNIFF_BYTES,
    SUPPORTED_FORMATS,
    load_image,
    preprocess,
    read_image_bytes,
    resize_image,
    sniff_format,
    to_tensor_array,
)
from deepfake_detect.errors import ImageError

RED = (255, 0, 0)
BLUE = (0, 0, 255)
COLOUR = (200, 100, 50)


def encode(image: Image.Image, image_format: str, **params: object) -> bytes:
    """The bytes of `image` saved in `image_format`."""
    buffer = io.BytesIO()
    image.save(buffer, image_format, **params)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    """Write `data` to `path` and return the path."""
    path.write_bytes(data)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data and the CRC over type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height RGB pixels, with almost no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + png_chunk(b"IEND", b"")
    )


def noisy_rgb(width: int = 64, height: int = 48) -> Image.Image:
    """Random pixels, so compressed files are big enough to be cut in half meaningfully."""
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def pixel(image: Image.Image, xy: tuple[int, int] = (0, 0)) -> tuple[int, ...]:
    """One pixel as a tuple, checking first that the image is RGB."""
    assert image.mode == "RGB"
    return tuple(image.getpixel(xy))


def assert_close(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 0) -> None:
    """Every channel of `actual` within `tolerance` of `expected`."""
    pairs = zip(actual, expected, strict=True)
    assert all(abs(a - e) <= tolerance for a, e in pairs), (actual, expected)


# --- formats -----------------------------------------------------------------------------


FORMAT_CASES = [
    # (PIL format, extension, save parameters, tolerance for lossy encoding)
    ("JPEG", "jpg", {"quality": 95}, 4),
    ("PNG", "png", {}, 0),
    ("WEBP", "webp", {"quality": 95}, 6),
    ("BMP", "bmp", {}, 0),
    ("TIFF", "tif", {}, 0),
    ("GIF", "gif", {}, 0),
]


@pytest.mark.parametrize(("image_format", "extension", "params", "tolerance"), FORMAT_CASES)
def test_every_supported_format_loads_as_rgb(
    tmp_path: Path, image_format: str, extension: str, params: dict, tolerance: int
) -> None:
    data = encode(Image.new("RGB", (30, 20), COLOUR), image_format, **params)
    path = write(tmp_path / f"face.{extension}", data)

    image = load_image(path)

    assert image.mode == "RGB"
    assert image.size == (30, 20)
    assert_close(pixel(image, (15, 10)), COLOUR, tolerance)
    assert sniff_format(data[:SNIFF_BYTES]) == image_format


def test_supported_formats_constant() -> None:
    assert {"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "AVIF", "HEIF"} == SUPPORTED_FORMATS
    assert MAX_IMAGE_PIXELS == 40_000_000


def test_format_comes_from_bytes_not_extension(tmp_path: Path) -> None:
    data = encode(Image.new("RGB", (8, 6), COLOUR), "PNG")
    path = write(tmp_path / "really_a_png.jpg", data)

    assert sniff_format(path.read_bytes()[:SNIFF_BYTES]) == "PNG"
    image = load_image(path)
    assert image.size == (8, 6)
    assert pixel(image) == COLOUR


def test_lossless_round_trip_keeps_every_pixel(tmp_path: Path) -> None:
    original = noisy_rgb()
    path = write(tmp_path / "noise.png", encode(original, "PNG"))

    assert np.array_equal(np.asarray(load_image(path)), np.asarray(original))


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "JPEG"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "PNG"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "WEBP"),
        (b"GIF89a\x01\x00\x01\x00", "GIF"),
        (b"GIF87a\x01\x00\x01\x00", "GIF"),
        (b"II*\x00\x08\x00\x00\x00", "TIFF"),
        (b"MM\x00*\x00\x00\x00\x08", "TIFF"),
        (b"BM" + b"\x00" * 12 + (40).to_bytes(4, "little"), "BMP"),
        (b"BMW owners club newsletter", None),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", None),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3", None),
        (b"\x00\x00\x01\x00\x01\x00\x10\x10", None),  # ICO
        (b"\xff\xd8", None),  # too short to be sure
        (b"", None),
    ],
)
def test_sniff_format(head: bytes, expected: str | None) -> None:
    assert sniff_format(head) == expected


# --- sources -------------------------------------------------------------------------------


def test_every_kind_of_source(tmp_path: Path) -> None:
    data = encode(Image.new("RGB", (5, 4), COLOUR), "PNG")
    path = write(tmp_path / "face.png", data)
    with path.open("rb") as file:
        from_file = load_image(file)
    lazy = Image.open(io.BytesIO(data))  # opened, not yet decoded

    sources = [str(path), path, data, bytearray(data), io.BytesIO(data), lazy]
    for image in [*(load_image(source) for source in sources), from_file]:
        assert image.size == (5, 4)
        assert pixel(image) == COLOUR


def test_result_is_detached_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "face.jpg", encode(noisy_rgb(), "JPEG"))
    with path.open("rb") as file:
        image = load_image(file)
    path.unlink()

    # A plain Image (not a plugin's ImageFile) owns its pixels: nothing is read later.
    assert type(image) is Image.Image
    assert np.asarray(image).shape == (48, 64, 3)


def test_pil_image_source_is_not_changed() -> None:
    source = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    image = load_image(source)

    assert image is not source
    assert source.mode == "RGBA"
    assert pixel(image) == (255, 255, 255)


def test_unknown_source_type_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        load_image(12345)  # type: ignore[arg-type]


# --- modes ---------------------------------------------------------------------------------


def palette_image(transparent_index: int | None = None) -> Image.Image:
    """2x1 palette image: index 0 red, index 1 blue; optionally one index transparent."""
    image = Image.new("P", (2, 1))
    image.putpalette([*RED, *BLUE] + [0] * (256 * 3 - 6))
    image.putpixel((1, 0), 1)
    if transparent_index is not None:
        image.info["transparency"] = transparent_index
    return image


def sixteen_bit(mode: str, values: list[int]) -> Image.Image:
    """A 1-row grey image of the given 16-bit (or 32-bit I) mode holding `values`."""
    dtype = {"I;16": "<u2", "I;16B": ">u2", "I": "<i4"}[mode]
    raw = np.array([values], dtype=dtype).tobytes()
    return Image.frombytes(mode, (len(values), 1), raw)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (Image.new("1", (2, 1), 1), [(255, 255, 255), (255, 255, 255)]),
        (Image.new("1", (2, 1), 0), [(0, 0, 0), (0, 0, 0)]),
        (Image.new("L", (2, 1), 128), [(128, 128, 128)] * 2),
        (Image.new("LA", (2, 1), (100, 255)), [(100, 100, 100)] * 2),
        (Image.new("LA", (2, 1), (100, 0)), [(255, 255, 255)] * 2),
        (Image.new("RGBA", (2, 1), (10, 20, 30, 255)), [(10, 20, 30)] * 2),
        (Image.new("RGBA", (2, 1), (10, 20, 30, 0)), [(255, 255, 255)] * 2),
        (Image.new("RGBA", (2, 1), (0, 0, 0, 128)), [(127, 127, 127)] * 2),
        (Image.new("RGBa", (2, 1), (0, 0, 0, 0)), [(255, 255, 255)] * 2),
        (Image.new("La", (2, 1), (0, 0)), [(255, 255, 255)] * 2),
        (palette_image(), [RED, BLUE]),
        (palette_image(transparent_index=1), [RED, (255, 255, 255)]),
        (Image.new("CMYK", (2, 1), (0, 0, 0, 0)), [(255, 255, 255)] * 2),
        (Image.new("CMYK", (2, 1), (0, 255, 255, 0)), [RED] * 2),
        (Image.new("CMYK", (2, 1), (0, 0, 0, 255)), [(0, 0, 0)] * 2),
        (sixteen_bit("I;16", [65535, 32768]), [(255, 255, 255), (128, 128, 128)]),
        (sixteen_bit("I;16", [256, 255]), [(1, 1, 1), (0, 0, 0)]),
        (sixteen_bit("I;16B", [65535, 4096]), [(255, 255, 255), (16, 16, 16)]),
        (sixteen_bit("I", [65535, 32768]), [(255, 255, 255), (128, 128, 128)]),
        (sixteen_bit("I", [70000, -1]), [(255, 255, 255), (0, 0, 0)]),
        (Image.new("F", (2, 1), 128.0), [(128, 128, 128)] * 2),
        (Image.new("YCbCr", (2, 1), (255, 128, 128)), [(255, 255, 255)] * 2),
    ],
    ids=lambda value: value.mode if isinstance(value, Image.Image) else None,
)
def test_every_mode_becomes_rgb(source: Image.Image, expected: list[tuple[int, ...]]) -> None:
    image = load_image(source)

    assert image.mode == "RGB"
    assert image.size == source.size
    for x, colour in enumerate(expected):
        assert_close(pixel(image, (x, 0)), colour, tolerance=1)


@pytest.mark.parametrize(
    ("source", "image_format", "expected"),
    [
        (sixteen_bit("I;16", [65535, 32768]), "PNG", [(255, 255, 255), (128, 128, 128)]),
        (sixteen_bit("I;16", [65535, 32768]), "TIFF", [(255, 255, 255), (128, 128, 128)]),
        (palette_image(transparent_index=0), "PNG", [(255, 255, 255), BLUE]),
        (palette_image(transparent_index=0), "GIF", [(255, 255, 255), BLUE]),
        (Image.new("LA", (2, 1), (50, 0)), "PNG", [(255, 255, 255)] * 2),
        (Image.new("RGBA", (2, 1), (*COLOUR, 255)), "WEBP", [COLOUR] * 2),
        (Image.new("L", (2, 1), 77), "JPEG", [(77, 77, 77)] * 2),
        (Image.new("CMYK", (2, 1), (0, 0, 0, 0)), "JPEG", [(255, 255, 255)] * 2),
        (Image.new("CMYK", (2, 1), (0, 0, 0, 0)), "TIFF", [(255, 255, 255)] * 2),
        (Image.new("1", (2, 1), 1), "BMP", [(255, 255, 255)] * 2),
    ],
    ids=lambda value: value.mode if isinstance(value, Image.Image) else value,
)
def test_modes_survive_a_file_round_trip(
    source: Image.Image, image_format: str, expected: list[tuple[int, ...]]
) -> None:
    params = {"lossless": True} if image_format == "WEBP" else {}
    image = load_image(encode(source, image_format, **params))

    for x, colour in enumerate(expected):
        assert_close(pixel(image, (x, 0)), colour, tolerance=2)


# --- orientation and frames ---------------------------------------------------------------


def test_exif_orientation_is_applied() -> None:
    # 20x10, left half red and right half blue, stored sideways with orientation 6: shown
    # rotated 90 degrees clockwise, so it stands 10 wide and 20 tall with red on top.
    stored = Image.new("RGB", (20, 10), BLUE)
    stored.paste(RED, (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())

    image = load_image(data)

    assert image.size == (10, 20)
    assert_close(pixel(image, (5, 3)), RED, tolerance=8)
    assert_close(pixel(image, (5, 16)), BLUE, tolerance=8)


def test_an_opened_sideways_image_is_oriented_in_the_copy_only() -> None:
    # load_image turns the files it opens in place; a caller's image keeps its pixels and tag.
    exif = Image.Exif()
    exif[0x0112] = 6
    with Image.open(io.BytesIO(encode(noisy_rgb(20, 10), "JPEG", exif=exif.tobytes()))) as opened:
        before = np.asarray(opened).copy()
        image = load_image(opened)
        assert image.size == (10, 20)
        assert opened.size == (20, 10) and np.array_equal(np.asarray(opened), before)
        assert opened.getexif().get(0x0112) == 6


@pytest.mark.parametrize(
    ("mode", "params"),
    [
        ("RGB", {"subsampling": "4:4:4"}),
        ("RGB", {"subsampling": "4:2:2"}),
        ("RGB", {"subsampling": "4:2:0", "quality": 60}),
        ("RGB", {"progressive": True}),
        ("L", {}),
        ("CMYK", {}),
    ],
)
def test_jpeg_pixels_are_pillows_whichever_decoder_reads_them(
    mode: str, params: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Plain colour and grey files are decoded whole by libjpeg-turbo through simplejpeg; the
    # rest by Pillow, whose pixels are the reference. Odd sizes test the chroma edges.
    data = encode(noisy_rgb(37, 23).convert(mode), "JPEG", **params)
    careful = []
    monkeypatch.setattr(images, "check_jpeg_complete", lambda *a: careful.append(a))

    image = load_image(data)

    with Image.open(io.BytesIO(data)) as reference:
        expected = np.asarray(reference.convert("RGB"))
    assert image.mode == "RGB" and np.array_equal(np.asarray(image), expected)
    assert bool(careful) == (mode == "CMYK")


def exif_jpeg(orientation: int, size: tuple[int, int] = (37, 23)) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(noisy_rgb(*size), "JPEG", exif=exif.tobytes())


def test_a_plain_jpeg_stays_an_array_until_it_must_become_an_image() -> None:
    # A JPEG without EXIF is read by libjpeg-turbo alone, header and pixels, and stays the
    # array it decoded into; EXIF (which may ask to turn it) and other formats go to Pillow.
    plain = encode(noisy_rgb(37, 23), "JPEG")
    decoded = images.decode_pixels("x", plain)
    assert isinstance(decoded, np.ndarray) and decoded.shape == (23, 37, 3)
    with Image.open(io.BytesIO(plain)) as reference:
        assert np.array_equal(decoded, np.asarray(reference.convert("RGB")))
    assert isinstance(images.decode_pixels("x", exif_jpeg(6)), Image.Image)
    assert isinstance(images.decode_pixels("x", encode(noisy_rgb(), "PNG")), Image.Image)
    assert isinstance(images.decode_image("x", plain), Image.Image)


def test_exif_is_found_among_the_segments_before_the_scan() -> None:
    assert images._has_exif(exif_jpeg(1))
    assert not images._has_exif(encode(noisy_rgb(), "JPEG"))
    # EXIF after another application segment still counts; segments that cannot be walked
    # send the file to the careful path.
    icc = encode(noisy_rgb(), "JPEG", icc_profile=b"\0" * 70_000, exif=Image.Exif().tobytes())
    assert images._has_exif(icc)
    # Stray bytes and a misplaced marker are stepped over, as libjpeg does: EXIF behind them
    # is still found. A header cut before its scan counts as holding EXIF (Pillow then reads,
    # and refuses, the file).
    turned = exif_jpeg(6)
    assert images._has_exif(turned[:2] + b"\x00\x00\xff\xd0" + turned[2:])
    plain = encode(noisy_rgb(), "JPEG")
    assert not images._has_exif(plain[:2] + b"\x00\xff\xd0" + plain[2:])
    assert images._has_exif(plain[:200]) and images._has_exif(b"\xff\xd8" + b"\x00" * 10)


def test_the_plain_path_keeps_the_pixel_limit(no_decoding: None) -> None:
    data = encode(Image.new("RGB", (100, 100), COLOUR), "JPEG")
    assert load_error(data, max_pixels=5000) == (
        "<bytes>: image is 100x100 pixels, over the limit of 5000" + RAISE
    )


@pytest.mark.parametrize(
    "data",
    [
        encode(noisy_rgb(32, 32), "JPEG"),  # already the model's size: no PIL image at all
        encode(noisy_rgb(37, 23), "JPEG"),  # resized
        encode(noisy_rgb(32, 32).convert("L"), "JPEG"),
        encode(noisy_rgb(32, 32).convert("CMYK"), "JPEG"),
        exif_jpeg(6, (32, 32)),
        encode(noisy_rgb(32, 32), "PNG"),
    ],
    ids=["jpeg-at-size", "jpeg-resized", "grey", "cmyk", "turned", "png"],
)
def test_model_input_is_preprocess_of_load_image(
    data: bytes, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    expected = preprocess(load_image(data), 32, mean, std, "bicubic")
    path = write(tmp_path / "face.img", data)
    if request.node.callspec.id == "jpeg-at-size":  # never a PIL image on its way
        monkeypatch.setattr(Image, "fromarray", lambda *a, **k: pytest.fail("made a PIL image"))
        monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("Pillow read it"))
        sources: tuple = (data, path)
    else:
        sources = (data, path, load_image(data))
    for source in sources:
        np.testing.assert_array_equal(images.model_input(source, 32, mean, std), expected)


def test_gif_first_frame_only(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (6, 6), colour) for colour in (RED, BLUE, COLOUR)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    path = write(tmp_path / "animated.gif", data)

    assert pixel(load_image(path)) == RED

    # An already opened GIF that has moved on to a later frame is rewound.
    with Image.open(path) as opened:
        opened.seek(2)
        assert pixel(load_image(opened)) == RED


# --- bad files ----------------------------------------------------------------------------


def load_error(source: object, **kwargs: int) -> str:
    """The message of the ImageError that loading `source` raises; it must be one line."""
    with pytest.raises(ImageError) as caught:
        load_image(source, **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_file_cut_in_half_is_an_error(tmp_path: Path, image_format: str) -> None:
    data = encode(noisy_rgb(), image_format)
    path = write(tmp_path / f"half.{image_format.lower()}", data[: len(data) // 2])

    message = load_error(path)

    assert message.startswith(f"{path}: ")  # the path as given, folders and all
    assert "corrupt or truncated" in message


def test_jpeg_missing_only_its_end_marker_is_an_error() -> None:
    # The last two bytes are the EOI marker; PIL would pad it only with LOAD_TRUNCATED_IMAGES.
    data = encode(noisy_rgb(), "JPEG")

    assert "Premature end of JPEG file" in load_error(data[:-2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_jpeg_cut_short_but_closed_by_an_end_marker_is_an_error(tmp_path: Path) -> None:
    # Pillow decodes such a file without an error: libjpeg only warns, and paints the missing
    # blocks grey. The warning is what tells, baseline and progressive alike.
    for progressive in (False, True):
        data = encode(noisy_rgb(256, 256), "JPEG", quality=90, progressive=progressive)
        for share in (0.4, 0.9):
            cut = data[: int(len(data) * share)] + b"\xff\xd9"
            path = write(tmp_path / "cut.jpg", cut)
            message = load_error(path)
            assert message.startswith(f"{path}: corrupt or truncated image (Corrupt JPEG data")


def test_stray_header_bytes_do_not_hide_a_cut_further_on() -> None:
    """libjpeg stops at its first warning; a harmless one must not mask a truncation."""
    data = encode(noisy_rgb(256, 256), "JPEG", quality=90)
    dht = data.index(b"\xff\xc4")
    padded = data[:dht] + b"\x00\x00\x00" + data[dht:]
    assert load_image(padded).size == (256, 256)  # stray bytes alone: an image
    cut = padded[: len(padded) // 2] + b"\xff\xd9"
    assert "corrupt or truncated image" in load_error(cut)


def test_jpeg_with_a_mid_grey_border_is_an_image() -> None:
    """Slides, frames and letter-boxed photos end in rows of exactly (128, 128, 128); they are
    images, not truncated files (found by a new user: the loader once judged by pixel values)."""
    photo = np.asarray(noisy_rgb(256, 256)).copy()
    photo[-16:] = 128
    for quality in (75, 90, 100):
        data = encode(Image.fromarray(photo), "JPEG", quality=quality)
        assert load_image(data).size == (256, 256)
    grey = encode(Image.new("RGB", (64, 64), (128, 128, 128)), "JPEG")
    assert pixel(load_image(grey), (63, 63)) == (128, 128, 128)


def test_jpeg_warnings_that_lose_no_pixel_are_accepted() -> None:
    """Padding before the end marker and data after it are common in camera files."""
    data = encode(noisy_rgb(64, 64), "JPEG")
    for variant in (data[:-2] + b"\x00\x00\xff\xd9", data + b"trailing bytes"):
        assert load_image(variant).size == load_image(data).size


def test_file_over_the_size_limit_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    path = write(tmp_path / "big.png", encode(noisy_rgb(), "PNG"))
    assert load_error(path) == f"{path}: file is 0 MiB, over the limit of 0 MiB for an image"
    with open(path, "rb") as file:
        assert "over the limit" in load_error(file)
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 10**6)
    assert load_image(path).size == (64, 48)


def test_corrupt_png_data_is_an_error() -> None:
    data = bytearray(encode(noisy_rgb(), "PNG"))
    data[len(data) // 2] ^= 0xFF

    assert load_error(bytes(data)).startswith("<bytes>: corrupt or truncated image (")


def test_garbage_bytes_are_an_error(tmp_path: Path) -> None:
    garbage = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    path = write(tmp_path / "garbage.jpg", garbage)

    assert load_error(path).startswith(f"{path}: unsupported image format")


def test_garbage_after_a_valid_signature_is_an_error() -> None:
    garbage = np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8).tobytes()

    assert load_error(b"\x89PNG\r\n\x1a\n" + garbage).startswith("<bytes>: ")


def test_text_file_named_jpg_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_text("this is not a photo\n")

    assert load_error(path) == (
        f"{path}: unsupported image format (not JPEG, PNG, WebP, BMP, TIFF, GIF, AVIF or HEIC)"
    )


@pytest.mark.parametrize("image_format", ["ICO", "PPM", "TGA", "PDF"])
def test_formats_pil_reads_but_we_do_not_are_errors(tmp_path: Path, image_format: str) -> None:
    path = write(tmp_path / "face.jpg", encode(Image.new("RGB", (16, 16), COLOUR), image_format))

    assert "unsupported image format" in load_error(path)


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.png", b"")

    assert load_error(path) == f"{path}: empty file"
    assert load_error(b"") == "<bytes>: empty file"


def test_missing_file_is_an_error_naming_the_path_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new user saw "other.png: no such file" for folder/other.png: the folder matters.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    assert load_error("folder/other.png") == "folder/other.png: no such file"
    assert load_error(Path("folder/other.png")) == "folder/other.png: no such file"
    with pytest.raises(ImageError, match="^folder/nowhere.jpg: no such file$"):
        read_image_bytes(Path("folder/nowhere.jpg"))


def test_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "folder.jpg").mkdir()

    assert load_error(tmp_path / "folder.jpg").startswith(f"{tmp_path}/folder.jpg: is a directory")


def test_text_mode_file_object_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "face.png", encode(Image.new("RGB", (2, 2)), "PNG"))
    with path.open(encoding="latin-1") as text_file:
        assert load_error(text_file).startswith(f"{path}: ")


class RecordingReader(io.RawIOBase):
    """A binary stream that notes how many bytes each read asks for."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at, self.asked = data, 0, []

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.asked.append(size)
        size = len(self.data) - self.at if size < 0 else size
        chunk = self.data[self.at : self.at + size]
        self.at += len(chunk)
        return chunk


def test_reads_ask_for_the_expected_size_never_for_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # read(n) allocates n bytes: asking for the 512 MiB limit per image cost a mapping made and
    # unmapped for each file, which stalled every other decoding thread.
    data = bytes(range(256)) * 20_000  # 5 MB: more than the first 1 MiB of a stream
    reader = RecordingReader(data)
    assert images.read_to_limit(reader, expected=len(data)) == data
    assert reader.asked[0] == len(data) + 1 and max(reader.asked) <= 16 << 20

    reader = RecordingReader(data)  # a stream of unknown size: 1 MiB first, then more
    assert images.read_to_limit(reader) == data
    assert reader.asked[0] == (1 << 20) + 1

    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)  # one byte over the limit, no more
    assert len(images.read_to_limit(RecordingReader(data), expected=10)) == 1001


def test_a_file_is_read_at_its_size_and_read_on_should_it_have_grown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "face.jpg", encode(noisy_rgb(), "JPEG"))
    asked = []
    real = images.read_to_limit
    monkeypatch.setattr(images, "read_to_limit", lambda f, n: asked.append(n) or real(f, n))
    assert read_image_bytes(path) == path.read_bytes() and asked == [path.stat().st_size]
    with open(path, "rb") as file:  # more than its size said: read to its end all the same
        assert real(file, expected=10) == path.read_bytes()


def test_a_pipe_is_read_to_its_end(tmp_path: Path) -> None:
    import os
    import threading

    data = encode(noisy_rgb(), "PNG")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # its size is 0: the reader asks for more until the end

    def feed() -> None:
        with open(fifo, "wb") as end:
            end.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        assert read_image_bytes(fifo) == data
    finally:
        writer.join()


def test_read_image_bytes_returns_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "blob.bin", b"\x00\x01\x02")

    assert read_image_bytes(path) == b"\x00\x01\x02"
    assert read_image_bytes(str(path)) == b"\x00\x01\x02"


# --- decompression bombs -------------------------------------------------------------------


# how every pixel-limit error says the limit can be raised
RAISE = " (--max-pixels or DEEPFAKE_DETECT_MAX_PIXELS raises it)"


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to decode pixels fail the test, to prove a check came first."""

    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_bomb_header_is_refused_before_decoding(tmp_path: Path, no_decoding: None) -> None:
    data = png_header_only(100_000, 100_000)
    assert len(data) < 200
    path = write(tmp_path / "big.png", data)

    message = load_error(path)

    # Pillow refuses it first, in its own terms; the user reads ours, with the limit in force
    assert message == f"{path}: image is 10000000000 pixels, over the limit of 40000000" + RAISE


def test_size_over_our_limit_is_refused_before_decoding(no_decoding: None) -> None:
    # 64 million pixels: under Pillow's own bomb threshold, over our default limit.
    message = load_error(png_header_only(8000, 8000))

    assert message == "<bytes>: image is 8000x8000 pixels, over the limit of 40000000" + RAISE


def test_pil_bomb_warning_is_not_mistaken_for_corruption(no_decoding: None) -> None:
    # 100 million pixels: Pillow warns while opening; our own limit then refuses the image.
    data = png_header_only(10_000, 10_000)

    # and the warning (two lines of Pillow's on stderr) never reaches the user.
    expected = "<bytes>: image is 10000x10000 pixels, over the limit of 40000000" + RAISE
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_error(data) == expected


def test_max_pixels_is_honoured() -> None:
    data = encode(Image.new("RGB", (100, 100), COLOUR), "PNG")

    assert load_error(data, max_pixels=5000) == (
        "<bytes>: image is 100x100 pixels, over the limit of 5000" + RAISE
    )
    assert load_image(data, max_pixels=10_000).size == (100, 100)
    assert "over the limit" in load_error(Image.new("RGB", (100, 100)), max_pixels=5000)


def test_max_pixels_must_be_positive() -> None:
    with pytest.raises(ValueError):
        load_image(b"", max_pixels=0)


def test_the_pixel_limit_can_be_raised_for_phone_photos(monkeypatch: pytest.MonkeyPatch) -> None:
    """48-200 MP phone photos were refused with no way to raise the limit; the header of a
    200 MP PNG stands in for one (nothing is decoded while the size is checked)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after
    header = png_header_only(14_142, 10_607)  # 150 MP
    assert "over the limit of 40000000" in load_error(header)
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "250e6")
    for stub in (header, png_header_only(16_330, 12_250)):  # 150 and 200 MP (over Pillow's own)
        assert "corrupt or truncated" in load_error(stub)  # read past the size, to the stub's end
    images.set_max_pixels(1000)
    try:
        assert "over the limit of 1000" in load_error(header)
    finally:
        images.set_max_pixels(None)
    for bad in ("lots", "inf"):
        monkeypatch.setenv(images.MAX_PIXELS_ENV, bad)
        with pytest.raises(ValueError, match=f"DEEPFAKE_DETECT_MAX_PIXELS='{bad}'"):
            load_image(header)
    with pytest.raises(ValueError, match="positive whole number"):
        images.set_max_pixels(0.5)


@pytest.mark.parametrize("image_format", ["AVIF", "HEIF"])
def test_avif_and_heic_photos_are_read(image_format: str) -> None:
    from PIL import features

    if image_format == "HEIF":
        pillow_heif = pytest.importorskip("pillow_heif")
        pillow_heif.register_heif_opener()
    elif not features.check("avif"):
        pytest.skip("this Pillow has no AVIF codec")
    data = encode(noisy_rgb(64, 48), image_format, quality=90)
    assert sniff_format(data[:SNIFF_BYTES]) == image_format
    image = load_image(data)
    assert image.size == (64, 48) and image.mode == "RGB"


def test_heic_without_its_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    head = b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heicmiaf" + bytes(100)
    monkeypatch.setitem(__import__("sys").modules, "pillow_heif", None)  # import fails
    monkeypatch.setattr(Image, "registered_extensions", lambda: {".png": "PNG"})
    assert load_error(head) == f"<bytes>: {images.HEIF_HINT}"


# --- resizing and arrays -------------------------------------------------------------------


def test_resize_squashes_the_whole_image_without_cropping() -> None:
    # A red strip on the left quarter: a centre crop to 100x100 would cut it off.
    image = Image.new("RGB", (200, 100), BLUE)
    image.paste(RED, (0, 0, 50, 100))

    resized = resize_image(image, 64)

    assert resized.size == (64, 64)
    assert_close(pixel(resized, (3, 32)), RED, tolerance=4)
    assert_close(pixel(resized, (60, 32)), BLUE, tolerance=4)


def test_resize_to_width_and_height() -> None:
    assert resize_image(Image.new("RGB", (50, 40)), (32, 24)).size == (32, 24)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest", "lanczos"])
def test_every_interpolation(interpolation: str) -> None:
    resized = resize_image(Image.new("RGB", (40, 30), COLOUR), 16, interpolation)

    assert resized.size == (16, 16)
    assert pixel(resized, (8, 8)) == COLOUR


def test_unknown_interpolation_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="area"):
        resize_image(Image.new("RGB", (4, 4)), 2, "area")


def test_non_positive_size_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        resize_image(Image.new("RGB", (4, 4)), 0)


def test_white_image_normalised_with_half_is_all_ones() -> None:
    array = to_tensor_array(Image.new("RGB", (7, 5), (255, 255, 255)), [0.5] * 3, [0.5] * 3)

    assert array.shape == (3, 5, 7)
    assert array.dtype == np.float32
    assert array.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(array, np.ones((3, 5, 7), dtype=np.float32))


def test_mean_and_std_apply_per_channel() -> None:
    image = Image.new("RGB", (2, 2), (255, 0, 51))

    array = to_tensor_array(image, mean=(0.0, 0.5, 0.1), std=(1.0, 0.5, 0.5))

    np.testing.assert_allclose(array[:, 0, 0], [1.0, -1.0, 0.2], atol=1e-6)


def test_channel_order_is_height_then_width() -> None:
    image = Image.new("RGB", (3, 2), (0, 0, 0))
    image.putpixel((2, 1), (255, 255, 255))

    array = to_tensor_array(image, [0.0] * 3, [1.0] * 3)

    assert array[0, 1, 2] == 1.0
    assert array.sum() == 3.0


@pytest.mark.parametrize(
    ("mean", "std"),
    [([0.5, 0.5], [0.5] * 3), ([0.5] * 3, [0.5] * 4), ([0.5] * 3, [0.5, 0.0, 0.5])],
)
def test_bad_mean_or_std_is_a_value_error(mean: list[float], std: list[float]) -> None:
    with pytest.raises(ValueError):
        to_tensor_array(Image.new("RGB", (2, 2)), mean, std)


def test_non_rgb_image_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="RGB"):
        to_tensor_array(Image.new("L", (2, 2)), [0.5] * 3, [0.5] * 3)


def test_preprocess_is_resize_then_array() -> None:
    image = noisy_rgb()
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    array = preprocess(image, 32, mean, std, interpolation="bilinear")

    expected = to_tensor_array(resize_image(image, 32, "bilinear"), mean, std)
    assert array.shape == (3, 32, 32)
    np.testing.assert_array_equal(array, expected)


def test_a_closed_pil_image_is_said_to_be_closed_not_corrupt(tmp_path: Path) -> None:
    path = write(tmp_path / "a.png", encode(Image.new("RGB", (8, 8), COLOUR), "PNG"))
    for image in (Image.new("RGB", (8, 8)), Image.open(path)):
        image.close()
        assert load_error(image) == "<image>: the PIL image was closed before it was scored"
    with Image.open(path) as image:  # open and not yet loaded: scored as usual
        assert load_image(image).size == (8, 8)
