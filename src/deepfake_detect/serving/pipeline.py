"""One uploaded file, from bytes to the model's input: decoded safely, described, warned about.

Runs in a worker thread (decoding is CPU work the event loop must not wait on). Every refusal
is an `ImageError` of the kind the service answers with its own status: 415 for what is not an
image we decode, 413 for what is over a limit (pixels are counted from the header, before any
is decoded), 422 for a file that is broken.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from deepfake_detect.data.audit.facts import estimate_jpeg_quality
from deepfake_detect.data.images import decode_image, open_quietly, preprocess, sniff_format
from deepfake_detect.data.provenance import read_provenance
from deepfake_detect.errors import ImageError, ImageTooLargeError, UnsupportedImageError
from deepfake_detect.models.config import ModelConfig

LOW_JPEG_QUALITY = 50
"""Below this estimated JPEG quality an image is called heavily compressed: the model was
trained on quality 60-95, and blocking hides the traces it reads."""


@dataclass
class Prepared:
    """A decoded upload: the image, the model's input, what the file is, what its metadata
    claims about its origin, and warnings."""

    image: Image.Image
    array: np.ndarray
    facts: dict
    provenance: dict
    warnings: list[str] = field(default_factory=list)


def status_of(error: ImageError) -> int:
    """The HTTP status the service answers an unreadable image with."""
    if isinstance(error, UnsupportedImageError):
        return 415
    if isinstance(error, ImageTooLargeError):
        return 413
    return 422


def prepare(data: bytes, name: str, config: ModelConfig, max_pixels: int | None) -> Prepared:
    """Decode `data` completely (or raise `ImageError` naming `name`) and preprocess it."""
    image = decode_image(name, data, max_pixels=max_pixels)
    image_format = sniff_format(data[:32]) or "unknown"
    facts = {"width": image.width, "height": image.height, "format": image_format,
             "bytes": len(data)}  # fmt: skip
    warnings = _warnings(image, image_format, data, config)
    array = preprocess(image, config.image_size, config.mean, config.std, config.interpolation)
    return Prepared(image, array, facts, read_provenance(data).to_dict(), warnings)


def _warnings(image: Image.Image, image_format: str, data: bytes, config: ModelConfig):
    size = config.image_size
    warnings = []
    if min(image.size) < size:
        warnings.append(
            f"image is {image.width}x{image.height}, smaller than the model's {size}x{size} "
            "input: it is enlarged, and the score is less reliable"
        )
    if image_format == "JPEG":
        quality = _jpeg_quality(data)
        if quality is not None and quality < LOW_JPEG_QUALITY:
            warnings.append(
                f"heavily compressed (JPEG quality about {quality}): compression hides the "
                "traces the model looks for, and the score is less reliable"
            )
    return warnings


def _jpeg_quality(data: bytes) -> int | None:
    try:
        with open_quietly(data, "JPEG") as header:
            return estimate_jpeg_quality(getattr(header, "quantization", None) or {})
    except Exception:  # the image itself decoded; a quality we cannot read is only no warning
        return None
