"""Synthetic face-like datasets with a planted, learnable signal in the fakes."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from deepfake_detect.serving.local import serve_in_thread

IMAGE_SIZE = 32
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
TINY = dict(
    backbone="test_efficientnet",
    pretrained=False,
    image_size=32,
    frozen_epochs=3,
    finetune_epochs=4,
    batch_size=16,
    lr=3e-3,
    finetune_lr=1e-3,
    patience=10,
    workers=0,
    progress=False,
)


def tiny_options(data: Path, output: Path, **changes):
    """Options of a tiny CPU training run (a few seconds) on a synthetic dataset."""
    from deepfake_detect.training.options import TrainOptions

    return TrainOptions(data=[data], output=output, **{**TINY, **changes})


def load_script(name: str) -> ModuleType:
    """A script of scripts/ imported as a module, so its functions can be tested."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def photo_like(rng: np.random.Generator, size: int = 64) -> Image.Image:
    """Detail at every scale, like a photograph (a pure smooth gradient would have none)."""
    pixels = np.zeros((size, size, 3), np.float32)
    for cells, weight in ((3, 1.0), (6, 0.6), (12, 0.35), (24, 0.2)):
        coarse = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.uint8)
        pixels += weight * np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC))
    return Image.fromarray(np.clip(pixels / 2.15, 0, 255).astype(np.uint8))


def write_class_folders(root: Path, n_per_class: int, seed: int, fmt: str = "PNG") -> Path:
    rng = np.random.default_rng(seed)
    for label in ("real", "fake"):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            suffix = ".png" if fmt == "PNG" else ".jpg"
            synthetic_image(rng, label == "fake").save(folder / f"{label}{i:03d}{suffix}", fmt)
    return root


def make_model(folder: Path, seed: int = 0, threshold: float = 0.5, temperature: float = 1.0):
    """A tiny network with random weights, saved as a model folder."""
    import torch

    from deepfake_detect.models.checkpoint import save_model
    from deepfake_detect.models.config import ModelConfig
    from deepfake_detect.models.networks import build_model

    torch.manual_seed(seed)
    net = build_model("test_efficientnet")
    config = ModelConfig(
        backbone="test_efficientnet", image_size=32, threshold=threshold, temperature=temperature
    )
    folder.mkdir(parents=True, exist_ok=True)
    save_model(folder, net.state_dict(), config)
    return folder


running_server = serve_in_thread  # the service on 127.0.0.1, for tests


@pytest.fixture(scope="session", autouse=True)
def audit_cache(tmp_path_factory):
    """Keep the audit's per-dataset cache out of the user's home during tests."""
    previous = os.environ.get("DEEPFAKE_DETECT_CACHE")
    os.environ["DEEPFAKE_DETECT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        del os.environ["DEEPFAKE_DETECT_CACHE"]
    else:
        os.environ["DEEPFAKE_DETECT_CACHE"] = previous


@pytest.fixture(scope="session")
def multi_source_data(tmp_path_factory) -> Path:
    """A folder of two sources, each with real/ and fake/ (like ../shared/data)."""
    root = tmp_path_factory.mktemp("data")
    write_class_folders(root / "alpha", 60, seed=1)
    write_class_folders(root / "beta", 40, seed=2, fmt="JPEG")
    return root
