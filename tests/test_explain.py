"""Grad-CAM explanations: the map finds a planted patch, agrees with the detector's score, has
the image's size, and the `explain` command writes it (or fails in one line, writing nothing)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_model, photo_like
from PIL import Image

from deepfake_detect.cli import main
from deepfake_detect.inference import load_detector
from deepfake_detect.inference.explain import Explainer, _features_and_logit

SIZE = 96
PATCH = 24


def with_patch(rng: np.random.Generator) -> tuple[Image.Image, tuple[int, int]]:
    """A photo-like image with a checkerboard patch at a random place: the only sign of fake."""
    pixels = np.asarray(photo_like(rng, SIZE)).copy()
    x, y = rng.integers(0, SIZE - PATCH, size=2)
    board = (np.indices((PATCH, PATCH)).sum(0) // 2 % 2 * 255).astype(np.uint8)
    pixels[y : y + PATCH, x : x + PATCH] = board[..., None]
    return Image.fromarray(pixels), (int(x), int(y))


@pytest.fixture(scope="module")
def patch_model(tmp_path_factory) -> Path:
    """A tiny network trained for a few seconds to call the patched images fake."""
    from deepfake_detect.data.images import preprocess
    from deepfake_detect.models.checkpoint import save_model
    from deepfake_detect.models.config import ModelConfig
    from deepfake_detect.models.networks import build_model

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    config = ModelConfig(backbone="test_efficientnet", image_size=SIZE, stem_stride=1,
                         head="linear", threshold=0.5)  # fmt: skip
    net = build_model("test_efficientnet", "linear", stem_stride=1)
    images = [photo_like(rng, SIZE) if i % 2 else with_patch(rng)[0] for i in range(160)]
    x = torch.from_numpy(np.stack([preprocess(im, SIZE, config.mean, config.std) for im in images]))
    y = torch.tensor([float(i % 2 == 0) for i in range(160)])
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(12):
        net.train()
        for batch in torch.randperm(160).split(32):
            optimiser.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[batch]), y[batch])
            loss.backward()
            optimiser.step()
    net.eval()
    with torch.no_grad():
        accuracy = ((net(x) > 0).float() == y).float().mean().item()
    assert accuracy >= 0.95, f"the tiny model did not learn the patch (accuracy {accuracy:.2f})"
    folder = tmp_path_factory.mktemp("explain") / "patch-model"
    save_model(folder, net.state_dict(), config)
    return folder


def test_the_heat_map_peaks_on_the_planted_patch(patch_model):
    explainer = Explainer.load(patch_model, "cpu")
    rng = np.random.default_rng(123)  # images the model never saw
    hits, fakes = 0, 0
    # Grad-CAM is as coarse as the last feature map: 6 x 6 cells of 16 px here, so "on the
    # patch" allows one cell around it (a region of about a third of the image: chance alone
    # would put some 7 of 20 peaks there)
    margin = SIZE // 6
    for _ in range(20):
        image, (x, y) = with_patch(rng)
        explanation = explainer.explain(image)
        fakes += explanation.label == "fake"
        row, col = np.unravel_index(np.argmax(explanation.heatmap), explanation.heatmap.shape)
        inside_x = x - margin <= col < x + PATCH + margin
        hits += inside_x and y - margin <= row < y + PATCH + margin
    assert fakes >= 18  # the model sees the patch, so its map has something to show
    assert hits >= 15, f"the peak was on the patch in {hits} of 20 images"


def test_explained_score_equals_the_detectors_and_the_map_fits_the_image(tmp_path):
    folder = make_model(tmp_path / "model", threshold=0.4, temperature=1.6)
    detector = load_detector(folder, "cpu", engine="torch")
    explainer = Explainer(detector)
    wide = photo_like(np.random.default_rng(1), 80).resize((80, 50))
    explanation = explainer.explain(wide)
    assert explanation.score == pytest.approx(detector.score([wide])[0].score, abs=1e-5)
    assert explanation.heatmap.shape == (50, 80) and explanation.heatmap.dtype == np.float32
    assert explanation.heatmap.min() >= 0 and explanation.heatmap.max() <= 1
    x = torch.from_numpy(detector.preprocess(wide)[None])
    _, logit = _features_and_logit(detector.net, x)
    with torch.no_grad():
        assert torch.allclose(logit, detector.net(x), atol=1e-6)  # same path as forward()
    assert all(p.grad is None for p in detector.net.parameters())

    rotated = io.BytesIO()  # stored 80x50, EXIF says rotate: the map follows the pixels shown
    exif = Image.Exif()
    exif[0x0112] = 6
    wide.save(rotated, "JPEG", exif=exif)
    assert explainer.explain(rotated.getvalue()).heatmap.shape == (80, 50)

    big = wide.resize((2000, 1250))
    png = Image.open(io.BytesIO(explainer.explain(big).overlay_png()))
    assert png.format == "PNG" and png.size == (1024, 640)


def test_explain_command_writes_the_map_or_one_line_and_nothing(tmp_path, capsys, monkeypatch):
    folder = make_model(tmp_path / "model")
    photo = tmp_path / "face.jpg"
    photo_like(np.random.default_rng(2), 64).save(photo)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photo.read_bytes()[:300])

    def run(*args: str) -> int:
        monkeypatch.setattr("sys.argv", ["deepfake-detect", *args])
        try:
            main()
        except SystemExit as exc:
            return exc.code or 0
        return 0

    out = tmp_path / "map.png"
    assert run("explain", str(photo), "--model", str(folder), "--output", str(out)) == 0
    assert Image.open(out).size == (64, 64)
    assert str(photo) in capsys.readouterr().out
    for args, words in (
        ([str(broken), "--output", str(tmp_path / "b.png")], "truncated"),
        ([str(photo), "--output", str(tmp_path / "map.jpg")], "must end in .png"),
        ([str(photo), "--output", str(tmp_path / "a.png"), "--alpha", "2"], "--alpha"),
    ):
        assert run("explain", *args, "--model", str(folder)) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["map.png"]
