"""Training and evaluation preprocessing."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from deepfake_detect.data.transforms import (
    EvalTransform,
    RandomAffine,
    RandomCrop,
    RandomDownscale,
    RandomFlip,
    RandomJPEG,
    build_train_transform,
    reencode_steps,
    sample_rng,
)
from deepfake_detect.models.config import ModelConfig

CONFIG = ModelConfig(backbone="test_efficientnet", image_size=32)


def gradient(size=(48, 40)) -> Image.Image:
    x = np.linspace(0, 255, size[0], dtype=np.uint8)
    return Image.fromarray(np.stack([np.tile(x, (size[1], 1))] * 3, axis=-1))


def test_eval_transform_resizes_the_whole_image_and_normalises():
    array = EvalTransform(CONFIG)(Image.new("RGB", (80, 40), "white"))
    assert array.shape == (3, 32, 32) and array.dtype == np.float32
    assert np.allclose(array, 1.0)  # white, mean = std = 0.5


def test_paper_augmentation_is_seeded_and_moves_pixels():
    transform = build_train_transform(CONFIG, "paper")
    image = gradient()
    a = transform(image, sample_rng(0, 1, 5))
    assert np.array_equal(a, transform(image, sample_rng(0, 1, 5)))
    assert not np.array_equal(a, transform(image, sample_rng(0, 2, 5)))
    assert not np.array_equal(a, EvalTransform(CONFIG)(image))


def test_affine_fills_edges_with_nearest_pixels_not_black():
    moved = RandomAffine(10.0, 0.1)(Image.new("RGB", (40, 40), (200, 100, 50)), sample_rng(1, 1, 1))
    assert np.asarray(moved).min(axis=(0, 1)).tolist() == [200, 100, 50]


def test_flip_and_crop_keep_pixels_on_the_grid():
    """Forensic augmentation: every output pixel is an input pixel, unlike a rotation."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    source = np.asarray(image)
    flips = [np.asarray(RandomFlip()(image, sample_rng(0, 1, i))) for i in range(20)]
    assert any(np.array_equal(f, source) for f in flips)
    assert any(np.array_equal(f, source[:, ::-1]) for f in flips)
    crops = [RandomCrop(32)(image, sample_rng(0, 1, i)) for i in range(20)]
    assert {c.size for c in crops} == {(32, 32)}
    origins = set()
    for crop in crops:
        window = np.asarray(crop)
        hits = [(y, x) for y in range(9) for x in range(17)
                if np.array_equal(source[y : y + 32, x : x + 32], window)]  # fmt: skip
        assert len(hits) == 1
        origins.add(hits[0])
    assert len(origins) > 5  # random windows, not always the same one


def test_crop_larger_than_the_image_leaves_it_whole():
    image = gradient((40, 30))
    assert RandomCrop(64)(image, sample_rng(0, 0, 0)) is image
    assert RandomCrop(35)(image, sample_rng(0, 0, 0)).size == (35, 30)


def test_train_crop_sets_the_training_input_size_but_not_evaluations():
    transform = build_train_transform(CONFIG, "flip", crop=24)
    a = transform(gradient(), sample_rng(0, 1, 5))
    assert a.shape == (3, 24, 24)
    assert np.array_equal(a, transform(gradient(), sample_rng(0, 1, 5)))
    assert EvalTransform(CONFIG)(gradient()).shape == (3, 32, 32)


def test_reencode_makes_png_and_jpeg_inputs_alike():
    steps = reencode_steps("jpeg:70-70")
    assert steps == (RandomJPEG(70, 70),)
    image = gradient()
    out = steps[0](image, sample_rng(0, 0, 0))
    assert out.mode == "RGB" and out.size == image.size
    assert not np.array_equal(np.asarray(out), np.asarray(image))  # compressed
    again = steps[0](image, sample_rng(0, 0, 0))
    assert np.array_equal(np.asarray(out), np.asarray(again))


def test_resize_jitter_shrinks_within_the_range():
    steps = reencode_steps("jpeg:60-95", "0.5-0.5")
    assert isinstance(steps[0], RandomDownscale) and isinstance(steps[1], RandomJPEG)
    assert steps[0](gradient((40, 40)), sample_rng(0, 0, 0)).size == (20, 20)


@pytest.mark.parametrize(
    ("reencode", "jitter"),
    [("png:1-2", None), ("jpeg:95-60", None), ("jpeg:0-50", None), ("jpeg:a-b", None),
     (None, "0.05-1.0"), (None, "0.9-0.5")],
)  # fmt: skip
def test_bad_reencode_specs_are_refused(reencode, jitter):
    with pytest.raises(ValueError):
        reencode_steps(reencode, jitter)


def test_package_and_cli_import_torch_lazily():
    code = (
        "import deepfake_detect, deepfake_detect.cli, deepfake_detect.inference, sys; "
        "import deepfake_detect.data.transforms, deepfake_detect.models.config; "
    )
    code += "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def augmented(augment: str, seed: int, count: int):
    """`count` draws of --augment on one noise image (the first drawn again must repeat), the
    unaugmented image, and the indices of draws other than it or its mirror."""
    transform = build_train_transform(CONFIG, augment)
    image = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 40, 3), np.uint8))
    outputs = [transform(image, sample_rng(0, seed, i)) for i in range(count)]
    assert all(o.shape == (3, 32, 32) for o in outputs)
    assert np.array_equal(outputs[0], transform(image, sample_rng(0, seed, 0)))
    plain = EvalTransform(CONFIG)(image)
    changed = [i for i, o in enumerate(outputs)
               if not np.allclose(o, plain) and not np.allclose(o, plain[:, :, ::-1])]  # fmt: skip
    return outputs, plain, changed


def test_robust_augmentation_is_seeded_and_changes_images_as_sharing_does():
    from deepfake_detect.data.transforms import robust_steps

    _, _, changed = augmented("robust", 3, 40)
    assert 20 < len(changed) < 40  # most images get some change, not every one
    names = [type(getattr(s, "step", s)).__name__ for s in robust_steps()]
    assert names == ["RandomFlip", "RandomRotate", "RandomCropResize", "RandomRescale",
                     "RandomBlur", "RandomJPEG"]  # fmt: skip


def test_crop_augmentation_crops_half_of_the_images_and_keeps_their_size():
    from deepfake_detect.data.transforms import crop_steps

    _, _, cropped = augmented("crop", 5, 200)
    assert 70 < len(cropped) < 130  # half of the images, give or take the draw
    names = [type(getattr(s, "step", s)).__name__ for s in crop_steps()]
    assert names == ["RandomFlip", "RandomCropResize"]


def test_rescale_augmentation_resizes_half_of_the_images_down_and_back_up():
    from deepfake_detect.data.transforms import rescale_steps

    outputs, plain, rescaled = augmented("rescale", 6, 200)
    assert 70 < len(rescaled) < 130  # half of the images, give or take the draw
    # resampled down and back up, noise loses detail: less spread between neighbouring pixels
    detail = [np.abs(np.diff(outputs[i], axis=2)).mean() for i in rescaled]
    assert max(detail) < np.abs(np.diff(plain, axis=2)).mean()
    names = [type(getattr(s, "step", s)).__name__ for s in rescale_steps()]
    assert names == ["RandomFlip", "RandomRescale"]


def test_figure_history_ends_at_384_px_as_the_diffusion_faces_do():
    from deepfake_detect.data.transforms import FigureHistory, RandomApply

    image = Image.fromarray(np.random.default_rng(4).integers(0, 256, (256, 256, 3), np.uint8))
    out = FigureHistory()(image, sample_rng(0, 1, 0))
    assert out.size == (384, 384) and out.mode == "RGB"
    assert not np.array_equal(np.asarray(out.resize((256, 256))), np.asarray(image))
    steps = reencode_steps("jpeg:60-95", figure_history=0.25)
    assert isinstance(steps[0], RandomApply) and steps[0].p == 0.25
    assert isinstance(steps[-1], RandomJPEG)
    with pytest.raises(ValueError, match="--figure-history"):
        reencode_steps(None, figure_history=1.5)


def block_phase(saved: Image.Image, quality: int) -> tuple[int, int]:
    """Where the 8x8 blocks of a JPEG save at `quality` fall (column and row phase, 0-7): a
    second save at the same quality changes the image least where its blocks fall on the
    first's (a "JPEG ghost")."""
    from deepfake_detect.data.transforms import _saved_shifted

    pixels = np.asarray(saved, np.float64)

    def change(dx: int, dy: int) -> float:
        again = _saved_shifted(saved, quality, (8 - dx) % 8, (8 - dy) % 8)
        return float(np.abs(np.asarray(again, np.float64) - pixels).mean())

    return min(((dx, dy) for dx in range(8) for dy in range(8)), key=lambda d: change(*d))


def test_grid_shift_saves_off_the_images_grid_without_resampling():
    from deepfake_detect.data.transforms import validation_transform

    image = Image.fromarray(np.random.default_rng(5).integers(0, 256, (64, 72, 3), np.uint8))
    assert block_phase(RandomJPEG(30, 30)(image, sample_rng(0, 0, 0)), 30) == (0, 0)
    phases = set()
    for index in range(12):
        rng = sample_rng(0, 0, index)
        out = RandomJPEG(30, 30, shift_share=1.0)(image, rng)
        assert out.size == image.size and out.mode == "RGB"
        phases.add(block_phase(out, 30))
    assert (0, 0) not in phases and len(phases) > 3  # off the grid (not both 0), at random
    # the error is the save's alone: as small as an aligned save's, no resampling blur added
    aligned = np.abs(np.asarray(RandomJPEG(30, 30)(image, sample_rng(0, 0, 0)), float) - image)
    assert np.abs(np.asarray(out, float) - np.asarray(image, float)).mean() < 1.2 * aligned.mean()
    # a share of 0 draws the quality alone, as before the shift existed, so that every earlier
    # run's later draws (the mirror, the sampler) are unchanged
    used, alone = sample_rng(1, 2, 3), sample_rng(1, 2, 3)
    RandomJPEG(60, 95)(image, used)
    alone.integers(60, 96)
    assert used.bit_generator.state == alone.bit_generator.state

    steps = reencode_steps("jpeg:60-95", figure_history=0.25, grid_shift=0.5)
    assert steps[-1] == RandomJPEG(60, 95, 0.5)
    assert validation_transform(CONFIG, steps).source_steps == (RandomJPEG(60, 95),)
    with pytest.raises(ValueError, match="--grid-shift"):
        reencode_steps(None, grid_shift=0.5)
    with pytest.raises(ValueError, match="--grid-shift"):
        reencode_steps("jpeg:60-95", grid_shift=1.5)
