"""Everyday changes (transforms.EVERYDAY_CHANGES), `evaluate --change`, and the two report
scripts of the second edition: scripts/everyday_changes.py and scripts/diffusion_report.py."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import load_script, photo_like, tiny_options
from PIL import Image

from deepfake_detect.data.datasets import ImageRecord


def test_each_change_does_what_its_name_says(tmp_path):
    from deepfake_detect.data.transforms import EVERYDAY_CHANGES, ISSUE_CHANGES, everyday_change
    from deepfake_detect.evaluation.runs import reencoded

    assert set(ISSUE_CHANGES) < set(EVERYDAY_CHANGES)  # the issue's, and the framing changes

    image = photo_like(np.random.default_rng(0), 64).resize((80, 64))
    image.save(tmp_path / "a.png")
    record = ImageRecord(tmp_path / "a.png", 0, "s", "g")
    seen = {}
    for name in EVERYDAY_CHANGES:
        (data,) = reencoded([record], None, change=name)
        with Image.open(io.BytesIO(data)) as out:
            seen[name] = (out.format, out.size, np.asarray(out.convert("RGB"), np.float32))
    assert all(fmt == "JPEG" for fmt, _, _ in seen.values())
    assert seen["resize-128"][1] == (128, 102)  # longer side 128, aspect kept
    assert seen["crop-80"][1] == seen["shrink-80"][1] == (64, 51)  # enlarged back alike
    assert seen["crop-65"][1] == seen["shrink-65"][1] == (52, 42)
    # a crop keeps the middle at its own scale; a shrink keeps the whole picture, smaller
    middle = np.asarray(image.convert("RGB"), np.float32)[11:53, 14:66]
    assert np.abs(seen["crop-65"][2] - middle).mean() < np.abs(seen["shrink-65"][2] - middle).mean()
    assert seen["rotate-5"][1] == seen["blur-1"][1] == seen["none"][1] == (80, 64)
    plain = seen["none"][2]
    for name in ("rotate-5", "blur-1", "jpeg-30"):
        assert np.abs(seen[name][2] - plain).mean() > 1.0, name  # each really changes pixels
    # a lower quality keeps fewer bytes
    sizes = {q: len(reencoded([record], None, change=q).__next__()) for q in ("none", "jpeg-30")}
    assert sizes["jpeg-30"] < sizes["none"]
    with pytest.raises(ValueError, match="--change must be one of"):
        everyday_change("rotate-90")


def test_a_change_and_a_quality_are_not_given_together(tmp_path):
    from deepfake_detect.evaluation.runs import score_records

    with pytest.raises(ValueError, match="sets its own JPEG quality"):
        score_records(None, [], jpeg_quality=75, change="rotate-5")


@pytest.fixture(scope="module")
def tiny_model(multi_source_data, tmp_path_factory):
    from deepfake_detect.training import train

    run = tmp_path_factory.mktemp("changes") / "run"
    train(tiny_options(multi_source_data, run, frozen_epochs=2, finetune_epochs=0, audit=False))
    return run


def test_evaluate_records_the_change(tiny_model, multi_source_data, tmp_path):
    from deepfake_detect.data.prepare import evaluation_records
    from deepfake_detect.evaluation.runs import evaluate
    from deepfake_detect.inference import load_detector

    detector = load_detector(tiny_model)
    records = evaluation_records([multi_source_data], "test", tiny_model)
    plain = evaluate(detector, records, tmp_path / "plain", jpeg_quality=75)
    turned = evaluate(detector, records, tmp_path / "turned", change="rotate-5")
    assert turned["change"] == "rotate-5" and plain["change"] is None
    assert turned["roc_auc"] != pytest.approx(plain["roc_auc"], abs=1e-9)


def run_manifest(run, data, tmp_path):
    """The split manifest of a run's split.csv, for the scripts that read one."""
    from deepfake_detect.data.datasets import read_split_csv
    from deepfake_detect.data.manifest import manifest_rows, write_manifest

    manifest = tmp_path / "split_manifest.csv"
    write_manifest(manifest_rows(read_split_csv(run / "split.csv"), data), manifest)
    return manifest


def test_everyday_changes_script_prints_a_table_per_model(tiny_model, multi_source_data, tmp_path,
                                                          capsys):  # fmt: skip
    from deepfake_detect.data.datasets import read_split_csv

    script = load_script("everyday_changes")
    manifest = run_manifest(tiny_model, multi_source_data, tmp_path)
    out_json = tmp_path / "changes.json"
    argv = ["--model", str(tiny_model), "--data", str(multi_source_data), "--manifest",
            str(manifest), "--changes", "none,rotate-5", "--json", str(out_json)]  # fmt: skip
    assert script.main(argv) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| change |") and len(table) == 4
    assert table[2].startswith("| none | ") and table[3].startswith("| rotate-5 | ")
    figures = json.loads(out_json.read_text())[str(tiny_model)]
    n_test = sum(r.split == "test" for r in read_split_csv(tiny_model / "split.csv"))
    none = figures["none"]
    assert none["detection_rate_count"][1] + none["false_alarm_rate_count"][1] == n_test
    assert script.main([*argv[:-4], "--changes", "tilt"]) == 2
    assert "--change must be one of" in capsys.readouterr().err


def test_diffusion_report_groups_by_generator_against_reals_with_history(
    multi_source_data, tmp_path, capsys
):
    from deepfake_detect.training import train

    rng = np.random.default_rng(3)
    diffusion = tmp_path / "diffusion-faces"
    diffusion.mkdir()
    for i in range(24):
        generator = ("SDXL", "FLUX1_dev")[i % 2]  # the folder's naming: generator_id
        photo_like(rng, 48).save(diffusion / f"{generator}_{i:04d}.jpg", quality=75)
    run = tmp_path / "run"
    train(tiny_options(multi_source_data, run, frozen_epochs=1, finetune_epochs=0, audit=False,
                       fake_only=[diffusion], test_fraction=0.4))  # fmt: skip
    script = load_script("diffusion_report")
    out_json = tmp_path / "diffusion.json"
    argv = ["--model", str(run), "--split-from", str(run), "--json", str(out_json)]
    assert script.main(argv) == 0
    text = capsys.readouterr().out
    assert "real photos with the same history called fake" in text
    figures = json.loads(out_json.read_text())
    assert set(figures) == {"split", "threshold", "all", "SDXL", "FLUX1_dev",
                            "real_photos_with_history"}  # fmt: skip
    parts = figures["SDXL"]["n_images"] + figures["FLUX1_dev"]["n_images"]
    assert figures["all"]["n_images"] == parts
    assert 0 <= figures["all"]["roc_auc"] <= 1 and len(figures["all"]["caught_interval"]) == 2
    reals = figures["real_photos_with_history"]["false_alarm_rate_count"][1]
    assert reals == sum(1 for r in script.split_records(run, "test", "diffusion-faces")[1])
    assert script.main(["--model", str(run), "--split-from", str(tmp_path)]) == 2
    assert "no split.csv" in capsys.readouterr().err


def test_generator_is_the_file_name_prefix():
    from pathlib import Path

    script = load_script("diffusion_report")
    assert script.generator_of(Path("a/SDXL_0001.jpg")) == "SDXL"
    assert script.generator_of(Path("FLUX1_schnell_0000003.jpg")) == "FLUX1_schnell"
    assert script.generator_of(Path("FLUX1_dev_0000076.jpg")) == "FLUX1_dev"
    assert script.generator_of(Path("photo.jpg")) == "unknown"
    assert script.generator_of(Path("my_photo.jpg")) == "unknown"


def test_grid_oracle_moves_only_where_the_blocks_fall():
    script = load_script("grid_oracle")
    image = photo_like(np.random.default_rng(3), 64)
    pixels = np.asarray(image, np.float32)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)
    with Image.open(buffer) as saved:
        plain = np.asarray(saved.convert("RGB"), np.float32)
    on_grid, off_grid = (
        np.asarray(script.resaved_at(image, offset), np.float32) for offset in [(0, 0), (3, 5)]
    )
    assert on_grid.shape == off_grid.shape == pixels.shape
    # on the grid the cut-out is the image saved alone, but for chroma at its edges
    assert np.abs(on_grid - plain).mean() < 0.25 * np.abs(off_grid - plain).mean()
    # off it, the same save's error, not resampling's: as far from the image as a plain save
    assert np.abs(off_grid - pixels).mean() < 1.3 * np.abs(plain - pixels).mean()
    # mirrored around, the face meets no grey edge: its border is as close as its middle
    mirrored = np.asarray(script.resaved_at(image, (3, 5), pad="mirror"), np.float32)
    grey_error, mirror_error = np.abs(off_grid - pixels), np.abs(mirrored - pixels)
    assert mirror_error[:2].mean() < grey_error[:2].mean()
    assert mirrored.shape == pixels.shape


def test_faces_in_frame_puts_each_person_in_a_cell_of_their_own(tmp_path):
    import random

    script = load_script("faces_in_frame")
    colours = [(250, 20, 20), (20, 250, 20), (20, 20, 250), (250, 250, 20)]
    paths = []
    for i, colour in enumerate(colours):
        Image.new("RGB", (256, 256), colour).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    others = tuple(paths[1:])
    tight, frame = script.framed(paths[0], random.Random(0), (1024, 768), (256, 256), others)
    with Image.open(io.BytesIO(frame)) as f, Image.open(io.BytesIO(tight)) as t:
        assert f.size == (1024, 768) and t.size == (256, 256)
        pixels = np.asarray(f.convert("RGB"), np.int16)
    for colour in colours:  # each face whole: none covers another
        close = (np.abs(pixels - np.array(colour)).max(axis=-1) < 30).sum()
        assert close > 0.9 * 256 * 256, colour
    with pytest.raises(ValueError, match="do not fit"):
        script.framed(paths[0], random.Random(0), (800, 600), (256, 256), others * 4)


def test_grid_oracle_script_scores_every_offset(tiny_model, multi_source_data, tmp_path, capsys):
    from deepfake_detect.data.datasets import read_split_csv

    script = load_script("grid_oracle")
    manifest = run_manifest(tiny_model, multi_source_data, tmp_path)
    out_json = tmp_path / "grid.json"
    argv = ["--model", str(tiny_model), "--data", str(multi_source_data), "--manifest",
            str(manifest), "--split", "test", "--pad", "mirror", "--then", "jpeg-75",
            "--json", str(out_json)]  # fmt: skip
    assert script.main(argv) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| (")]
    assert len(rows) == len(script.OFFSETS)
    figures = json.loads(out_json.read_text())
    n_test = sum(r.split == "test" for r in read_split_csv(tiny_model / "split.csv"))
    assert figures["images"] == n_test and figures["pad"] == "mirror"
    assert set(figures["offsets"]) == {f"{dx},{dy}" for dx, dy in script.OFFSETS}
    assert script.main([*argv, "--limit", "-1"]) == 2
    assert "--limit must be" in capsys.readouterr().err


def test_framing_probe_widens_the_window_around_the_face():
    from deepfake_detect.inference.faces import CropPolicy, Face

    script = load_script("framing_probe")

    class OneFace:
        def detect(self, image):
            return [Face((200.0, 150.0, 250.0, 200.0), 0.99), Face((10.0, 10.0, 30.0, 30.0), 0.9)]

    photo = Image.new("RGB", (600, 400), (90, 90, 90))
    assert script.face_fill(photo, OneFace()) == pytest.approx(50 / 400)  # the largest face
    face = script.largest_face(photo, OneFace())
    assert face.box == (200.0, 150.0, 250.0, 200.0)
    crops = script.windows(photo, face, CropPolicy())
    sides = [c.width for c in crops.values()]
    around = sides[: len(script.SCALES)]  # each edge rounded on its own: within a pixel
    assert all(abs(a - 50 * s) <= 1 for a, s in zip(around, script.SCALES, strict=True))
    assert all(abs(c.width - c.height) <= 1 for c in crops.values())  # squares, to a pixel
    assert sides[len(script.SCALES) :] == [round(400 * w) for w in script.WINDOWS]
    names = list(crops)
    assert names[0].startswith("face x1.34 (fill 0.7") and "centre 400 px (fill 0.12)" in crops

    class NoFace:
        def detect(self, image):
            return []

    assert script.face_fill(photo, NoFace()) is None
    assert script.largest_face(photo, NoFace()) is None


def test_framing_probe_reports_fills_per_source_and_class(tmp_path):
    from types import SimpleNamespace

    from deepfake_detect.inference.faces import Face

    script = load_script("framing_probe")
    sides = iter([20.0, 40.0, 60.0, 80.0, 100.0, None])

    class Sized:  # each call finds a face of the next side, or none
        def detect(self, image):
            side = next(sides)
            return [] if side is None else [Face((0.0, 0.0, side, side), 0.9)]

    path = tmp_path / "x.png"
    Image.new("RGB", (100, 200), (90, 90, 90)).save(path)
    records = [SimpleNamespace(path=path, source="s", label=1) for _ in range(5)]
    records.append(SimpleNamespace(path=path, source="s", label=0))
    report = script.fills_by_group(records, Sized())
    fake, real = report["s fake"], report["s real"]
    assert fake["images"] == 5 and fake["no_face"] == 0  # over the shorter side, 100 px
    assert fake["quartiles"] == pytest.approx([0.4, 0.6, 0.8])
    assert fake["tenths"] == pytest.approx([0.28, 0.92])
    assert real == {"images": 1, "no_face": 1, "quartiles": [None] * 3, "tenths": [None] * 2}


def test_framing_probe_script_reports_fills_and_refuses_a_photo_without_a_face(
    tiny_model, multi_source_data, tmp_path, capsys
):
    script = load_script("framing_probe")
    manifest = run_manifest(tiny_model, multi_source_data, tmp_path)
    photo = tmp_path / "plain.png"
    Image.new("RGB", (300, 200), (128, 128, 128)).save(photo)
    out_json = tmp_path / "probe.json"
    argv = ["--model", str(tiny_model), "--data", str(multi_source_data), "--manifest",
            str(manifest), "--split", "test", "--photo", str(photo),
            "--json", str(out_json)]  # fmt: skip
    assert script.main(argv) == 2
    captured = capsys.readouterr()
    assert "| source and class |" in captured.out  # part one ran on every test image
    assert captured.err.strip() == f"error: {photo}: no face found in the photo"
    assert not out_json.exists()  # nothing half-written
    assert script.main([*argv, "--photo", str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err
