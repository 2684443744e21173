"""Preprocessing pipelines: one for evaluation, one composable pipeline for training.

Both work on PIL images and numpy (no torch), so training, evaluation and prediction share them.
Randomness comes from a numpy Generator passed in per image, which makes augmentation
reproducible from (seed, epoch, index) alone: a resumed run sees the same images as an
uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from deepfake_detect.checkpoint import ModelConfig
from deepfake_detect.images import preprocess, resize_image, to_tensor_array

AUGMENTATIONS = ("paper", "none")
ImageStep = Callable[[Image.Image, np.random.Generator], Image.Image]


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
class TrainTransform:
    """Resize to the model's input, apply the random image steps, then scale and normalise."""

    config: ModelConfig
    steps: tuple[ImageStep, ...] = ()

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> np.ndarray:
        image = resize_image(image, self.config.image_size, self.config.interpolation)
        for step in self.steps:
            image = step(image, rng)
        return to_tensor_array(image, self.config.mean, self.config.std)


@dataclass(frozen=True)
class EvalTransform:
    """The whole image resized to the input size (no centre crop: faces fill the frame)."""

    config: ModelConfig

    def __call__(self, image: Image.Image, rng: np.random.Generator | None = None) -> np.ndarray:
        c = self.config
        return preprocess(image, c.image_size, c.mean, c.std, c.interpolation)


def augmentation_steps(augment: str) -> tuple[ImageStep, ...]:
    if augment == "paper":
        return (RandomAffine(degrees=10.0, translate=0.1),)
    if augment == "none":
        return ()
    raise ValueError(f"unknown augmentation {augment!r}: choose one of {', '.join(AUGMENTATIONS)}")


def build_train_transform(config: ModelConfig, augment: str = "paper") -> TrainTransform:
    return TrainTransform(config, augmentation_steps(augment))


def sample_rng(seed: int, epoch: int, index: int, extra: Sequence[int] = ()) -> np.random.Generator:
    """A generator that depends only on the run's seed, the epoch and the image's index."""
    return np.random.default_rng([seed, epoch, index, *extra])
