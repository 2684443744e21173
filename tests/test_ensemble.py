"""Ensembles: two tiny runs combined into one model folder that every command loads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script, synthetic_image, tiny_options
from safetensors.torch import load_file

from deepfake_detect.data.datasets import read_split_csv
from deepfake_detect.data.prepare import evaluation_records
from deepfake_detect.errors import DataError, ModelError
from deepfake_detect.inference.detector import load_detector
from deepfake_detect.models.config import read_config
from deepfake_detect.training.ensembling import build_ensemble
from deepfake_detect.training.trainer import train

FAST = dict(frozen_epochs=2, finetune_epochs=1, reencode="jpeg:60-95")


@pytest.fixture(scope="module")
def members(multi_source_data, tmp_path_factory) -> list[Path]:
    """Two runs on the same split with different recipes (heads). Seed 3, not the default:
    only the recorded split.csv, not a re-made default split, finds their test images."""
    root = tmp_path_factory.mktemp("members")
    runs = [root / "paper", root / "linear"]
    train(tiny_options(multi_source_data, runs[0], seed=3, **FAST))
    train(tiny_options(multi_source_data, runs[1], head="linear", seed=3, **FAST))
    return runs


@pytest.fixture(scope="module")
def ensemble_dir(members, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("ens") / "pair"
    build_ensemble(members, output, workers=0, device="cpu")
    return output


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def test_ensemble_scores_are_the_mean_of_member_logits(members, ensemble_dir, multi_source_data):
    images = sorted((multi_source_data / "alpha" / "fake").iterdir())[:4]
    images += sorted((multi_source_data / "beta" / "real").iterdir())[:4]
    member_logits = [
        logit(np.array([p.score for p in load_detector(m, device="cpu").score(images)]))
        for m in members
    ]
    ensemble = load_detector(ensemble_dir, device="cpu", engine="torch")
    scores = np.array([p.score for p in ensemble.score(images)])
    # the members' calibrated logits, averaged, then the ensemble's own validation temperature
    expected = np.mean(member_logits, axis=0) / ensemble.config.temperature
    assert np.allclose(logit(scores), expected, atol=0.02)  # float16 weights, float32 compute
    assert np.abs(member_logits[0] - member_logits[1]).max() > 0.5  # two different models
    assert all(p.dtype == torch.float32 for p in ensemble.net.parameters())


def test_ensemble_folder_records_members_split_and_threshold(members, ensemble_dir):
    config = read_config(ensemble_dir)
    assert config.backbone == "ensemble" and config.head == "mean-logit"
    assert [m["head"] for m in config.members] == ["paper", "linear"]
    assert [m["weights_sha256"] for m in config.members] == [
        read_config(m).weights_sha256 for m in members
    ]
    assert 0.0 <= config.threshold <= 1.0 and config.metrics["roc_auc"] >= 0.9
    assert config.metrics["n_images"] == sum(
        r.split == "valid" for r in read_split_csv(members[0] / "split.csv")
    )
    split = {(r.path, r.split) for r in read_split_csv(ensemble_dir / "split.csv")}
    assert split == {(r.path, r.split) for r in read_split_csv(members[0] / "split.csv")}


def test_weights_are_stored_as_float16_and_half_the_size(members, ensemble_dir, tmp_path):
    dtypes = {t.dtype for t in load_file(ensemble_dir / "model.safetensors").values()}
    assert torch.float16 in dtypes and torch.float32 not in dtypes
    full = tmp_path / "full"
    build_ensemble(members, full, half=False, workers=0, device="cpu")
    half_size = (ensemble_dir / "model.safetensors").stat().st_size
    assert half_size < 0.6 * (full / "model.safetensors").stat().st_size


def test_evaluate_finds_the_members_test_split(ensemble_dir, members, multi_source_data):
    detector = load_detector(ensemble_dir, device="cpu")
    records = evaluation_records([multi_source_data], "test", detector.model_dir)
    expected = {r.path for r in read_split_csv(members[0] / "split.csv") if r.split == "test"}
    assert {r.path for r in records} == expected


def copy_run(run: Path, target: Path) -> Path:
    shutil.copytree(run, target)
    return target


def test_refuses_members_that_cannot_be_combined(members, ensemble_dir, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ModelError, match="at least two"):
        build_ensemble(members[:1], out)
    other_size = copy_run(members[1], tmp_path / "size")
    config = json.loads((other_size / "config.json").read_text())
    (other_size / "config.json").write_text(json.dumps({**config, "image_size": 64}))
    with pytest.raises(ModelError, match="image_size 64 differs"):
        build_ensemble([members[0], other_size], out)
    with pytest.raises(ModelError, match="is an ensemble itself"):
        build_ensemble([members[0], ensemble_dir], out)
    with pytest.raises(ModelError, match="the same model as"):
        build_ensemble([members[1], copy_run(members[1], tmp_path / "twin")], out)
    plain = copy_run(members[1], tmp_path / "plain")
    config = json.loads((plain / "config.json").read_text())
    config["training"]["reencode"] = None
    (plain / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="trained with --reencode None"):
        build_ensemble([members[0], plain], out)
    no_split = copy_run(members[1], tmp_path / "nosplit")
    (no_split / "split.csv").unlink()
    with pytest.raises(DataError, match="no split.csv and no split of its own"):
        build_ensemble([members[0], no_split], out)
    other_split = copy_run(members[1], tmp_path / "othersplit")
    lines = (other_split / "split.csv").read_text().splitlines()
    moved = next(i for i, line in enumerate(lines) if line.endswith(",test"))
    lines[moved] = lines[moved].removesuffix(",test") + ",train"
    (other_split / "split.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="another split"):
        build_ensemble([members[0], other_split], out)
    assert not out.exists()


def test_refuses_a_used_output_and_leaves_it_alone(members, tmp_path):
    out = tmp_path / "used"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not an empty folder"):
        build_ensemble(members, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_cli_builds_an_ensemble_and_reports_bad_input_in_one_line(members, tmp_path):
    cli = [sys.executable, "-m", "deepfake_detect.cli"]
    out = tmp_path / "cli"
    args = ["ensemble", "--model", str(members[0]), "--model", str(members[1])]
    done = subprocess.run([*cli, *args, "--output", str(out), "--workers", "0", "--device", "cpu"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ensemble of 2" in done.stdout and (out / "config.json").is_file()
    bad = subprocess.run([*cli, "ensemble", "--model", str(members[0]), "--output",
                          str(tmp_path / "x")], capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: an ensemble needs at least two --model folders"
    ]
    assert not (tmp_path / "x").exists()


def test_inference_benchmark_prints_both_rates_and_their_ratio(
    members, ensemble_dir, multi_source_data, capsys
):
    bench = load_script("bench_inference")
    images = str(multi_source_data / "alpha" / "fake")
    args = [str(ensemble_dir), str(members[0]), "--images", images, "--repeat", "1"]
    assert bench.main([*args, "--rounds", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{ensemble_dir}: ") and "images/s" in out[0]
    assert out[-1].startswith("speed ratio") and float(out[-1].rsplit(" ", 1)[1]) > 0
    assert bench.main([*args, "--repeat", "0"]) == 2
    assert bench.main([str(ensemble_dir / "missing"), str(members[0])]) == 2
    assert "model not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("folder", "words"),
    [("ensemble_dir", "the mean of the logits of 2 networks"),
     ("soup_dir", "its weights the mean of 2 fine-tuned networks'")],
)  # fmt: skip
def test_export_script_bundles_a_combined_model_with_its_card(
    folder, words, request, multi_source_data, tmp_path, monkeypatch
):
    from deepfake_detect.evaluation.runs import evaluate

    model_dir = request.getfixturevalue(folder)
    runs = [Path(run) for run in read_config(model_dir).training["members"]]
    export = load_script("export_bundled_model")
    detector = load_detector(model_dir, device="cpu")
    records = evaluation_records([multi_source_data], "test", detector.model_dir)
    evaluate(detector, records, tmp_path / "heldout", jpeg_quality=75)
    bundled = tmp_path / "bundled"
    monkeypatch.setattr(export, "BUNDLED_DIR", bundled)
    argv = ["export", str(model_dir), str(multi_source_data), "--eval", str(tmp_path / "heldout")]
    monkeypatch.setattr(sys, "argv", argv)
    export.main()
    assert (
        load_detector(bundled, device="cpu").config.weights_sha256 == detector.config.weights_sha256
    )
    card = (bundled / "MODEL_CARD.md").read_text()
    assert words in card and "float16" in card
    assert all(f"- `{run.name}`:" in card for run in runs) and len(runs) == 2
    assert "{" not in card  # every placeholder filled


@pytest.mark.parametrize("folder", ["ensemble_dir", "soup_dir"])
def test_threshold_and_metrics_are_those_of_the_stored_model(folder, request, members):
    """Chosen with the float16-rounded weights, on validation re-encoded as in training."""
    from deepfake_detect.data.datasets import select
    from deepfake_detect.data.transforms import EvalTransform, reencode_steps, validation_transform
    from deepfake_detect.evaluation.scoring import calibrate_on_validation

    model_dir = request.getfixturevalue(folder)
    detector = load_detector(model_dir, device="cpu", engine="torch")
    stored = load_file(model_dir / "model.safetensors").values()
    assert any(t.dtype == torch.float16 for t in stored)
    valid = select(read_split_csv(model_dir / "split.csv"), "valid")
    first = read_config(members[0])  # the first member of both
    options = dict(seed=3, batch_size=16, workers=0, device=detector.device, progress=False)
    reencoded = validation_transform(first, reencode_steps(first.training["reencode"]))
    temperature, threshold, metrics = calibrate_on_validation(
        detector.net, valid, reencoded, **options
    )
    assert detector.config.temperature == pytest.approx(temperature, rel=1e-6)
    assert detector.threshold == pytest.approx(threshold, abs=1e-6)
    assert detector.config.metrics["loss"] == pytest.approx(metrics["loss"], abs=1e-6)
    *_, plain = calibrate_on_validation(detector.net, valid, EvalTransform(first), **options)
    assert plain["loss"] != pytest.approx(metrics["loss"], abs=1e-4)  # re-encoding mattered


def test_a_failed_write_leaves_no_output(members, tmp_path, monkeypatch):
    import deepfake_detect.training.ensembling as ensemble

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ensemble, "save_model", broken)
    with pytest.raises(OSError, match="No space"):
        build_ensemble(members, tmp_path / "out", workers=0, device="cpu")
    assert not (tmp_path / "out").exists()


def test_config_versions_tell_one_network_from_an_ensemble(members, ensemble_dir, tmp_path):
    single = json.loads((members[0] / "config.json").read_text())
    assert "members" not in single and single["format_version"] == 1  # older readers load it
    config = json.loads((ensemble_dir / "config.json").read_text())
    assert config["format_version"] == 2 and len(config["members"]) == 2
    for name in ("model.safetensors", "split.csv"):
        shutil.copyfile(ensemble_dir / name, tmp_path / name)
    (tmp_path / "config.json").write_text(json.dumps({**config, "format_version": 1}))
    with pytest.raises(ModelError, match="version 2 is for ensembles"):
        load_detector(tmp_path)
    assert all(m["epochs_run"] == 3 and m["training_seconds"] > 0 for m in config["members"])


def kaggle_layout(root: Path) -> Path:
    """The Kaggle 140k folder layout (no CSVs): the dataset brings its own split."""
    rng = np.random.default_rng(5)
    base = root / "real_vs_fake" / "real-vs-fake"
    for split, n in (("train", 24), ("valid", 8), ("test", 8)):
        for label in ("real", "fake"):
            folder = base / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                synthetic_image(rng, label == "fake").save(folder / f"{i:03d}.jpg", "JPEG")
    return root


def test_members_trained_on_a_dataset_with_its_own_split(tmp_path):
    data = kaggle_layout(tmp_path / "kaggle")
    runs = [tmp_path / "a", tmp_path / "b"]
    train(tiny_options(data, runs[0], **FAST))
    train(tiny_options(data, runs[1], head="linear", **FAST))
    assert not (runs[0] / "split.csv").exists()
    config = build_ensemble(runs, tmp_path / "ab", workers=0, device="cpu")
    assert config.metrics["n_images"] == 16
    split = read_split_csv(tmp_path / "ab" / "split.csv")
    assert sum(r.split == "test" for r in split) == 16


@pytest.fixture(scope="module")
def siblings(members, multi_source_data, tmp_path_factory) -> list[Path]:
    """members[0] and a run with its network and frozen phase, fine-tuned with another
    augmentation: the two start fine-tuning from the same weights, as a model soup needs."""
    other = tmp_path_factory.mktemp("siblings") / "flip"
    train(tiny_options(multi_source_data, other, seed=3, augment="flip", **FAST))
    return [members[0], other]


@pytest.fixture(scope="module")
def soup_dir(siblings, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("soup") / "average"
    build_ensemble(siblings, output, combine="weights", workers=0, device="cpu")
    return output


def test_weight_average_is_one_network_with_the_mean_weights(siblings, multi_source_data, tmp_path):
    output = tmp_path / "soup"
    config = build_ensemble(siblings, output, combine="weights", half=False, workers=0,
                            device="cpu")  # fmt: skip
    assert not config.members and config.format_version == 1
    assert (config.backbone, config.head) == ("test_efficientnet", "paper")
    assert [m["run"] for m in config.training["averaged"]] == [str(s.resolve()) for s in siblings]
    ours = load_file(output / "model.safetensors")
    a, b = (load_file(s / "model.safetensors") for s in siblings)
    moved = [k for k in a if a[k].is_floating_point() and not torch.equal(a[k], b[k])]
    assert len(moved) > 10  # fine-tuning took the two apart
    assert all(torch.allclose(ours[k], (a[k] + b[k]) / 2) for k in a if a[k].is_floating_point())
    assert config.metrics["roc_auc"] >= 0.9  # same start: the average still finds the signal
    detector = load_detector(output, device="cpu")  # an ordinary single-network folder
    alpha = multi_source_data / "alpha"
    fakes, reals = (sorted((alpha / c).iterdir())[:6] for c in ("fake", "real"))
    fake_scores, real_scores = ([p.score for p in detector.score(x)] for x in (fakes, reals))
    assert min(fake_scores) > max(real_scores)


def test_weight_average_refuses_other_networks_and_combines(members, siblings, tmp_path):
    from deepfake_detect.models.ensemble import average_weights

    out = tmp_path / "out"
    with pytest.raises(ModelError, match="only the same architecture can be averaged"):
        build_ensemble(members, out, combine="weights")  # paper head and linear head
    with pytest.raises(ValueError, match="--combine must be one of logits, weights"):
        build_ensemble(members, out, combine="median")
    assert not out.exists()
    small, large = {"w": torch.zeros(2)}, {"w": torch.zeros(3)}
    with pytest.raises(ModelError, match="b: its weights do not have a's names and shapes"):
        average_weights([small, large], [Path("a"), Path("b")])
