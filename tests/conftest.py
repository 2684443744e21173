"""Synthetic face-like datasets with a planted, learnable signal in the fakes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

IMAGE_SIZE = 32


def synthetic_image(rng: np.random.Generator, fake: bool, size: int = IMAGE_SIZE) -> Image.Image:
    """Smooth random colours; fakes carry a red cast and a stripe pattern a model can learn."""
    coarse = rng.uniform(40, 200, size=(4, 4, 3)).astype(np.uint8)
    smooth = Image.fromarray(coarse).resize((size, size), Image.BILINEAR)
    base = np.asarray(smooth, dtype=np.float32)
    base += rng.normal(0, 6, size=base.shape)
    if fake:
        base[..., 0] += 45
        base[::4, :, 1] += 25
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def write_class_folders(root: Path, n_per_class: int, seed: int, fmt: str = "PNG") -> Path:
    rng = np.random.default_rng(seed)
    for label in ("real", "fake"):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            suffix = ".png" if fmt == "PNG" else ".jpg"
            synthetic_image(rng, label == "fake").save(folder / f"{label}{i:03d}{suffix}", fmt)
    return root


@pytest.fixture(scope="session")
def multi_source_data(tmp_path_factory) -> Path:
    """A folder of two sources, each with real/ and fake/ (like ../shared/data)."""
    root = tmp_path_factory.mktemp("data")
    write_class_folders(root / "alpha", 60, seed=1)
    write_class_folders(root / "beta", 40, seed=2, fmt="JPEG")
    return root
