"""`robustness`: the perturbations are really applied (checked on the pixels), and the command
writes one row per level, a table and a plot per perturbation."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from conftest import make_model, photo_like, write_class_folders
from PIL import Image

from deepfake_detect.data.audit.facts import estimate_jpeg_quality
from deepfake_detect.data.transforms import PERTURBATIONS, perturb


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return photo_like(np.random.default_rng(0), 128)


def high_frequency(image: Image.Image) -> float:
    """The energy of the Laplacian: fine detail, which blur and downscaling remove."""
    x = np.asarray(image.convert("L"), dtype=np.float64)
    laplacian = 4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:]
    return float(np.mean(laplacian**2))


def test_jpeg_levels_are_the_quality_of_the_quantisation_tables(photo):
    rng = np.random.default_rng(0)
    for quality in PERTURBATIONS["jpeg"][1]:
        data = perturb(photo, "jpeg", quality, rng)
        with Image.open(io.BytesIO(data)) as image:
            assert estimate_jpeg_quality(image.quantization) == pytest.approx(quality, abs=1)


@pytest.mark.parametrize("name", ["blur", "downscale"])
def test_blur_and_downscaling_remove_fine_detail_step_by_step(photo, name):
    rng = np.random.default_rng(0)
    levels = PERTURBATIONS[name][1]
    images = [perturb(photo, name, level, rng) for level in levels]
    assert all(image.size == photo.size for image in images)
    energy = [high_frequency(image) for image in images]
    assert energy[0] == pytest.approx(high_frequency(photo))  # the first level changes nothing
    assert all(a > b for a, b in zip(energy, energy[1:], strict=False)), energy


def test_noise_has_the_stated_spread_and_a_screenshot_the_stated_size(photo):
    flat = Image.new("RGB", (200, 200), (128, 128, 128))
    for sigma in PERTURBATIONS["noise"][1][1:]:
        noisy = np.asarray(perturb(flat, "noise", sigma, np.random.default_rng(1)), np.float64)
        assert noisy.std() == pytest.approx(sigma, rel=0.08)
    for scale in PERTURBATIONS["screenshot"][1]:
        shot = perturb(photo, "screenshot", scale, np.random.default_rng(0))
        assert shot.size == (round(128 * scale), round(128 * scale))


def test_the_command_writes_a_row_per_level_and_a_plot_each(tmp_path, capsys, monkeypatch):
    from test_cli import run_cli

    data = write_class_folders(tmp_path / "data", 12, seed=3)
    model = make_model(tmp_path / "model")
    out = tmp_path / "robust"
    code, stdout, err = run_cli(["robustness", "--model", str(model), "--data", str(data),
                                 "--split", "all", "--perturbations", "jpeg,blur",
                                 "--output", str(out)], capsys, monkeypatch)  # fmt: skip
    assert code == 0, err
    with open(out / "robustness.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["perturbation", "level", "images", "accuracy", "accuracy_interval",
                             "roc_auc", "roc_auc_interval", "false_alarm_rate",
                             "detection_rate"]  # fmt: skip
    levels = [float(r["level"]) for r in rows]
    assert levels == [*PERTURBATIONS["jpeg"][1], *PERTURBATIONS["blur"][1]]
    assert {int(r["images"]) for r in rows} == {24}
    for name in ("jpeg", "blur"):
        assert (out / f"robustness-{name}.png").stat().st_size > 1000
    assert "| jpeg | 95 | 24 |" in stdout and (out / "robustness.md").is_file()
    code, _, err = run_cli(["robustness", "--model", str(model), "--data", str(data),
                            "--perturbations", "jpeg,fog", "--output", str(tmp_path / "x")],
                           capsys, monkeypatch)  # fmt: skip
    assert code == 2 and "--perturbations must name some of" in err
    assert not (tmp_path / "x").exists()
