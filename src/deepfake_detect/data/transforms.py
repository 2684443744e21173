"""Preprocessing pipelines: one for evaluation, one composable pipeline for training.

Both work on PIL images and numpy (no torch), so training, evaluation and prediction share them.
Randomness comes from a numpy Generator passed in per image, which makes augmentation
reproducible from (seed, epoch, index) alone: a resumed run sees the same images as an
uninterrupted one.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
from PIL import Image

from deepfake_detect.data.images import preprocess, resize_image, to_tensor_array

AUGMENTATIONS = ("paper", "flip", "crop", "rescale", "robust", "none")
ImageStep = Callable[[Image.Image, np.random.Generator], Image.Image]


class Preprocessing(Protocol):
    """How a model wants its input: what the transforms need of a model's config (a
    `ModelConfig` is one), so that the data layer needs nothing of the model layer."""

    image_size: int
    mean: Sequence[float]
    std: Sequence[float]
    interpolation: str


@dataclass(frozen=True)
class RandomAffine:
    """Random rotation and shift, as Keras' ImageDataGenerator in the paper (fill: nearest edge)."""

    degrees: float = 10.0
    translate: float = 0.1

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        angle = rng.uniform(-self.degrees, self.degrees)
        dx = rng.uniform(-self.translate, self.translate) * image.width
        dy = rng.uniform(-self.translate, self.translate) * image.height
        # Pad with edge pixels first so the rotated, shifted image has no black corners.
        pad = int(math.ceil(max(image.size) * (self.translate + 0.2)))
        padded = Image.fromarray(
            np.pad(np.asarray(image), ((pad, pad), (pad, pad), (0, 0)), "edge")
        )
        moved = padded.rotate(angle, resample=Image.BILINEAR, translate=(dx, dy))
        return moved.crop((pad, pad, pad + image.width, pad + image.height))


@dataclass(frozen=True)
class RandomFlip:
    """Mirror half of the images left to right: moves no pixel off the sampling grid."""

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return image.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image


@dataclass(frozen=True)
class RandomCrop:
    """A random size x size window, cut without resampling.

    Rotations and sub-pixel shifts interpolate every pixel, which smooths away the
    high-frequency traces a generator leaves; a crop keeps them, and training on windows
    smaller than the input is also cheaper. Evaluation still sees the whole image.
    """

    size: int

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        width, height = image.size
        if self.size >= width and self.size >= height:
            return image
        size_x, size_y = min(self.size, width), min(self.size, height)
        left = int(rng.integers(0, width - size_x + 1))
        top = int(rng.integers(0, height - size_y + 1))
        return image.crop((left, top, left + size_x, top + size_y))


@dataclass(frozen=True)
class RandomJPEG:
    """Re-encode as JPEG at a random quality, so the file format carries no label.

    With `shift_share`, that share of the images is saved as a face cut out of a larger photo
    is: placed 0-7 pixels right and 0-7 down (not both 0) in a canvas (the gap filled by
    mirroring the image), the canvas saved, and the image's own pixels cut out again. No pixel
    is resampled; only the 8x8 blocks of this save fall off the image's own grid, on which a
    save of the image as it is puts them (`scripts/grid_oracle.py` measures what that does)."""

    quality_min: int = 60
    quality_max: int = 95
    shift_share: float = 0.0

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        buffer = io.BytesIO()
        quality = int(rng.integers(self.quality_min, self.quality_max + 1))
        if self.shift_share and rng.random() < self.shift_share:
            dx, dy = (int(v) for v in rng.integers(0, 8, size=2))
            if dx == dy == 0:
                dx = int(rng.integers(1, 8))
            return _saved_shifted(image, quality, dx, dy)
        image.save(buffer, "JPEG", quality=quality)
        buffer.seek(0)
        return Image.open(buffer).convert("RGB")


def _saved_shifted(image: Image.Image, quality: int, dx: int, dy: int) -> Image.Image:
    """`image` saved as JPEG at `quality` from a canvas where it sits at (dx, dy), cut out."""
    pixels = np.asarray(image.convert("RGB"))
    canvas = np.pad(pixels, ((dy, 0), (dx, 0), (0, 0)), mode="symmetric")
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as saved:
        return saved.convert("RGB").crop((dx, dy, dx + image.width, dy + image.height))


@dataclass(frozen=True)
class RandomDownscale:
    """Shrink by a random factor before re-encoding, so image size carries no label either."""

    scale_min: float = 0.5
    scale_max: float = 1.0

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        scale = rng.uniform(self.scale_min, self.scale_max)
        size = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
        return image.resize(size, Image.BICUBIC)


@dataclass(frozen=True)
class RandomApply:
    """Apply `step` to a share `p` of the images (the draw comes from the image's generator)."""

    step: ImageStep
    p: float

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return self.step(image, rng) if rng.random() < self.p else image


@dataclass(frozen=True)
class RandomRotate:
    """A small rotation, as a photo straightened or tilted, edges filled with nearest pixels."""

    degrees: float = 5.0

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return RandomAffine(self.degrees, 0.0)(image, rng)


@dataclass(frozen=True)
class RandomCropResize:
    """A random window of `area_min`-1 of the image's area (the face kept, as a user's crop
    keeps it), resized back to the image's size."""

    area_min: float = 0.64

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        side = math.sqrt(rng.uniform(self.area_min, 1.0))
        width, height = max(8, round(image.width * side)), max(8, round(image.height * side))
        left = int(rng.integers(0, image.width - width + 1))
        top = int(rng.integers(0, image.height - height + 1))
        window = image.crop((left, top, left + width, top + height))
        return window.resize(image.size, Image.BICUBIC)


@dataclass(frozen=True)
class RandomRescale:
    """Down to a random scale and back up, as an image shared small and viewed large."""

    scale_min: float = 0.4
    scale_max: float = 1.0

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        small = RandomDownscale(self.scale_min, self.scale_max)(image, rng)
        filters = (Image.BILINEAR, Image.BICUBIC, Image.LANCZOS)
        return small.resize(image.size, filters[int(rng.integers(0, len(filters)))])


@dataclass(frozen=True)
class RandomBlur:
    """Mild Gaussian blur (sigma in pixels), as from focus, motion or a soft resampler."""

    sigma_min: float = 0.2
    sigma_max: float = 1.2

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        from PIL import ImageFilter

        return image.filter(ImageFilter.GaussianBlur(rng.uniform(self.sigma_min, self.sigma_max)))


@dataclass(frozen=True)
class FigureHistory:
    """The processing history of `../shared/fake-only/diffusion-faces`, for any image:
    resized to about 480 px on its longer side, JPEG at about quality 75 (a figure of a
    mosaic), then resized to 384 px and JPEG at 75 (how the folder stores them). Given to
    both classes alike, so that this history tells no class."""

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        longer = max(image.size)
        figure = rng.uniform(440, 520) / longer
        size = (max(8, round(image.width * figure)), max(8, round(image.height * figure)))
        image = RandomJPEG(70, 80)(image.resize(size, Image.BICUBIC), rng)
        final = 384 / max(image.size)
        size = (max(8, round(image.width * final)), max(8, round(image.height * final)))
        return RandomJPEG(75, 75)(image.resize(size, Image.BICUBIC), rng)


def robust_steps() -> tuple[ImageStep, ...]:
    """--augment robust: what a shared photo goes through, each step to a share of the images
    and at mild strength, after a mirror: a small rotation, a crop that keeps the face, a
    resize down and back up, a blur, and JPEG at quality 30-95 last (as a share ends)."""
    return (
        RandomFlip(),
        RandomApply(RandomRotate(5.0), 0.3),
        RandomApply(RandomCropResize(0.64), 0.3),
        RandomApply(RandomRescale(0.4, 1.0), 0.3),
        RandomApply(RandomBlur(0.2, 1.2), 0.15),
        RandomApply(RandomJPEG(30, 95), 0.5),
    )


def crop_steps() -> tuple[ImageStep, ...]:
    """--augment crop: a mirror, then for half of the images a crop keeping 50-100% of the
    area, resized back (an 80% centre crop, 64% of the area, lies inside that range). Only the
    crop of the robust steps: the rescaling, blur and low JPEG qualities stay out, since those
    runs call real photos of other people fake (docs/experiments.md)."""
    return (RandomFlip(), RandomApply(RandomCropResize(0.5), 0.5))


def rescale_steps() -> tuple[ImageStep, ...]:
    """--augment rescale: a mirror, then for half of the images a resize down to 0.4-1 of the
    input and back up with a random filter (a resize to 128 px of a 256 px face, half the side,
    lies inside that range). Only the rescaling of the robust steps, whose crop alone made real
    photos of other people look fake (candidate F); trained alone it did so too, at about half
    the crop's rate (candidate I, docs/experiments.md)."""
    return (RandomFlip(), RandomApply(RandomRescale(0.4, 1.0), 0.5))


@dataclass(frozen=True)
class TrainTransform:
    """Source steps on the original image (re-encoding), resize to the model's input, then the
    random augmentation steps, then scale to 0-1 and normalise."""

    config: Preprocessing
    steps: tuple[ImageStep, ...] = ()
    source_steps: tuple[ImageStep, ...] = ()

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> np.ndarray:
        for step in self.source_steps:
            image = step(image, rng)
        image = resize_image(image, self.config.image_size, self.config.interpolation)
        for step in self.steps:
            image = step(image, rng)
        return to_tensor_array(image, self.config.mean, self.config.std)


@dataclass(frozen=True)
class EvalTransform:
    """The whole image resized to the input size (no centre crop: faces fill the frame)."""

    config: Preprocessing

    def __call__(self, image: Image.Image, rng: np.random.Generator | None = None) -> np.ndarray:
        c = self.config
        return preprocess(image, c.image_size, c.mean, c.std, c.interpolation)


def augmentation_steps(augment: str, crop: int | None = None) -> tuple[ImageStep, ...]:
    """The random steps of --augment, then a random --train-crop window if one is asked for."""
    if augment == "paper":
        steps: tuple[ImageStep, ...] = (RandomAffine(degrees=10.0, translate=0.1),)
    elif augment == "flip":
        steps = (RandomFlip(),)
    elif augment == "crop":
        steps = crop_steps()
    elif augment == "rescale":
        steps = rescale_steps()
    elif augment == "robust":
        steps = robust_steps()
    elif augment == "none":
        steps = ()
    else:
        choices = ", ".join(AUGMENTATIONS)
        raise ValueError(f"unknown augmentation {augment!r}: choose one of {choices}")
    return (*steps, RandomCrop(crop)) if crop else steps


def parse_range(text: str, kind: type, name: str) -> tuple:
    low, _, high = text.partition("-")
    try:
        values = (kind(low), kind(high or low))
    except ValueError:
        raise ValueError(f"{name}: expected a range like 60-95, got {text!r}") from None
    if values[0] > values[1]:
        raise ValueError(f"{name}: the range {text!r} runs backwards")
    return values


def reencode_steps(
    reencode: str | None,
    resize_jitter: str | None = None,
    figure_history: float = 0.0,
    grid_shift: float = 0.0,
) -> tuple[ImageStep, ...]:
    """Parse --reencode (none, or jpeg:QMIN-QMAX) and --resize-jitter (SMIN-SMAX); with
    --figure-history P, a share P of the images first goes through `FigureHistory`; with
    --grid-shift P, a share P of the re-encodes puts its blocks off the image's grid
    (`RandomJPEG.shift_share`)."""
    if not 0.0 <= figure_history <= 1.0:
        raise ValueError("--figure-history: a share within [0, 1]")
    if not 0.0 <= grid_shift <= 1.0:
        raise ValueError("--grid-shift: a share within [0, 1]")
    if grid_shift and (not reencode or reencode == "none"):
        raise ValueError("--grid-shift shifts the re-encode of --reencode: give both")
    steps: list[ImageStep] = []
    if figure_history:
        steps.append(RandomApply(FigureHistory(), figure_history))
    if resize_jitter:
        low, high = parse_range(resize_jitter, float, "--resize-jitter")
        if not 0.1 <= low <= high <= 1.0:
            raise ValueError("--resize-jitter: scales must lie within [0.1, 1.0]")
        steps.append(RandomDownscale(low, high))
    if reencode and reencode != "none":
        kind, _, qualities = reencode.partition(":")
        if kind != "jpeg":
            raise ValueError(f"--reencode: expected none or jpeg:QMIN-QMAX, got {reencode!r}")
        low, high = parse_range(qualities or "60-95", int, "--reencode")
        if not 1 <= low <= high <= 100:
            raise ValueError("--reencode: JPEG qualities must lie within 1-100")
        steps.append(RandomJPEG(low, high, grid_shift))
    return tuple(steps)


def build_train_transform(
    config: Preprocessing,
    augment: str = "paper",
    source_steps: tuple[ImageStep, ...] = (),
    crop: int | None = None,
) -> TrainTransform:
    return TrainTransform(config, augmentation_steps(augment, crop), source_steps)


def sample_rng(seed: int, epoch: int, index: int, extra: Sequence[int] = ()) -> np.random.Generator:
    """A generator that depends only on the run's seed, the epoch and the image's index."""
    return np.random.default_rng([seed, epoch, index, *extra])


def validation_transform(config: Preprocessing, source_steps: Sequence) -> TrainTransform:
    """Validation images are re-encoded like the training images (at a fixed quality per
    image), so that neither the best epoch nor the threshold is chosen by file format. Each is
    saved as it is: validation measures the images as they come, not as a shift would."""
    jpeg = tuple(replace(s, shift_share=0.0) for s in source_steps if isinstance(s, RandomJPEG))
    return TrainTransform(config, (), jpeg) if jpeg else EvalTransform(config)


# -- everyday changes: what happens to a shared photo, each at one fixed strength ---------------


def _rotated(image: Image.Image, degrees: float) -> Image.Image:
    """Rotated about its centre, the corners filled with edge pixels (as RandomRotate)."""
    pad = int(math.ceil(max(image.size) * 0.2))
    padded = Image.fromarray(np.pad(np.asarray(image), ((pad, pad), (pad, pad), (0, 0)), "edge"))
    turned = padded.rotate(degrees, resample=Image.BILINEAR)
    return turned.crop((pad, pad, pad + image.width, pad + image.height))


def _resized(image: Image.Image, longer: int) -> Image.Image:
    scale = longer / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.BICUBIC)


def _centre_crop(image: Image.Image, side: float) -> Image.Image:
    """The centre `side` of each dimension (0.8: 64% of the area), at its own size."""
    width, height = round(image.width * side), round(image.height * side)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def _shrunk(image: Image.Image, share: float) -> Image.Image:
    """Resized to `share` of each side (the detector enlarges it back, the framing kept)."""
    size = (max(1, round(image.width * share)), max(1, round(image.height * share)))
    return image.resize(size, Image.BICUBIC)


def _blurred(image: Image.Image, sigma: float) -> Image.Image:
    from PIL import ImageFilter

    return image.filter(ImageFilter.GaussianBlur(sigma))


EVERYDAY_CHANGES: dict[str, tuple[Callable[[Image.Image], Image.Image], int]] = {
    "none": (lambda image: image, 75),
    "resize-128": (lambda image: _resized(image, 128), 75),
    "rotate-5": (lambda image: _rotated(image, 5.0), 75),
    "crop-80": (lambda image: _centre_crop(image, 0.8), 75),
    "blur-1": (lambda image: _blurred(image, 1.0), 75),
    "jpeg-50": (lambda image: image, 50),
    "jpeg-30": (lambda image: image, 30),
    "shrink-80": (lambda image: _shrunk(image, 0.8), 75),
    "shrink-65": (lambda image: _shrunk(image, 0.65), 75),
    "crop-65": (lambda image: _centre_crop(image, 0.65), 75),
}
"""Named changes at one fixed strength, each with the JPEG quality the changed image is then
saved at (75 as every measurement of the bundled model; 50 and 30 for the JPEG changes):
resized to 128 px on the longer side (the detector scales it back up), rotated by 5 degrees,
the centre 80% of each side kept (64% of the area), blurred (sigma 1 pixel), or re-saved at a
low quality. The last three tell framing from enlargement: shrunk to 0.8 or 0.65 of each side
(enlarged back by the detector, the face as framed before) against the centre 0.65 kept
(enlarged as much, the face filling more of the picture: crop-80 pairs with shrink-80).
`evaluate --change` and `scripts/everyday_changes.py` apply them."""

ISSUE_CHANGES = ("none", "resize-128", "rotate-5", "crop-80", "blur-1", "jpeg-50", "jpeg-30")
"""The changes the second edition's issue names: `scripts/everyday_changes.py`'s default."""


def everyday_change(name: str) -> tuple[Callable[[Image.Image], Image.Image], int]:
    if name not in EVERYDAY_CHANGES:
        raise ValueError(f"--change must be one of {', '.join(EVERYDAY_CHANGES)}, not {name!r}")
    return EVERYDAY_CHANGES[name]


# -- perturbations at graded strengths: what `deepfake-detect robustness` measures ---------------


def _jpeg(image: Image.Image, quality: float) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(quality))
    return buffer.getvalue()


def _gaussian(image: Image.Image, sigma: float) -> Image.Image:
    """A true Gaussian blur, also for sigma under 1 px (Pillow's box approximation leaves an
    image unchanged at 0.5)."""
    if sigma == 0:
        return image
    from scipy.ndimage import gaussian_filter

    pixels = gaussian_filter(np.asarray(image, dtype=np.float32), sigma=(sigma, sigma, 0))
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def _down_and_up(image: Image.Image, factor: float) -> Image.Image:
    """Resized by `factor` and back to the original size: the detail of a smaller copy."""
    if factor == 1.0:
        return image
    return _shrunk(image, factor).resize(image.size, Image.BICUBIC)


def _noisy(image: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    if sigma == 0:
        return image
    noise = rng.normal(0.0, sigma, (image.height, image.width, 3))
    pixels = np.asarray(image, dtype=np.float32) + noise
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def _screenshot(image: Image.Image, scale: float) -> Image.Image:
    """Shown at `scale` by a viewer (bilinear, as browsers and image viewers resample) and
    captured losslessly: a screenshot of the image."""
    if scale == 1.0:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.BILINEAR)


PERTURBATIONS: dict[str, tuple[str, tuple[float, ...]]] = {
    "jpeg": ("JPEG quality", (95, 85, 75, 60, 50, 40, 30)),
    "blur": ("Gaussian blur sigma (px)", (0, 0.5, 1, 1.5, 2, 3)),
    "downscale": ("downscale factor, then back up", (1, 0.75, 0.5, 0.35, 0.25)),
    "noise": ("Gaussian noise sigma (levels of 255)", (0, 2, 4, 8, 12, 16)),
    "screenshot": ("screenshot at display scale", (1, 1.25, 0.8, 0.67, 0.5)),
}
"""Each perturbation with its axis label and levels, from none (or the mildest) to the
strongest: JPEG re-compression (the level is the quality), Gaussian blur, downscaling and back,
additive Gaussian noise, and a screenshot-like bilinear resample at a display scale."""


def perturb(image: Image.Image, name: str, level: float, rng: np.random.Generator):
    """The image after one perturbation at one level: JPEG bytes for "jpeg", else an image
    (lossless: nothing else is added)."""
    if name == "jpeg":
        return _jpeg(image, level)
    if name == "blur":
        return _gaussian(image, level)
    if name == "downscale":
        return _down_and_up(image, level)
    if name == "noise":
        return _noisy(image, level, rng)
    if name == "screenshot":
        return _screenshot(image, level)
    raise ValueError(f"unknown perturbation {name!r}: one of {', '.join(PERTURBATIONS)}")
