"""A whole tiny run on the CPU: train both phases, kill and resume, evaluate, predict."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import load_script, tiny_options
from safetensors.torch import load_file

from deepfake_detect.data.datasets import read_split_csv
from deepfake_detect.data.prepare import evaluation_records
from deepfake_detect.errors import DataError, DetectorError, ModelError
from deepfake_detect.evaluation.runs import evaluate
from deepfake_detect.inference.detector import load_detector
from deepfake_detect.models.config import read_config
from deepfake_detect.models.networks import build_model
from deepfake_detect.training.loop import WeightAverage
from deepfake_detect.training.trainer import Trainer, train


@pytest.fixture(scope="module")
def trained_run(multi_source_data, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_options(multi_source_data, run_dir))
    return run_dir


def test_run_folder_holds_every_artefact(trained_run, multi_source_data):
    names = {p.name for p in trained_run.iterdir()}
    expected = {"model.safetensors", "config.json", "history.csv", "split.csv", "curves.png"}
    assert expected <= names
    assert not [n for n in names if n.startswith(("state-", "best-", "feature-cache", "."))]
    config = json.loads((trained_run / "config.json").read_text())
    for key in ("format_version", "name", "version", "backbone", "head", "image_size", "mean",
                "std", "interpolation", "threshold", "temperature", "class_names",
                "weights_sha256", "training", "package_version", "metrics"):  # fmt: skip
        assert key in config
    assert config["temperature"] > 0 and config["class_names"] == ["real", "fake"]
    assert config["temperature"] != 1.0  # fitted on validation
    metrics = config["metrics"]
    assert 0 <= metrics["ece"] <= 1 and 0 <= metrics["brier"] <= 1
    assert metrics["ece"] <= metrics["ece_before_calibration"] + 1e-9
    # a shipped model travels: config.json names no folder of the machine that trained it
    text = (trained_run / "config.json").read_text()
    assert str(trained_run.parent) not in text and str(multi_source_data) not in text
    assert config["training"]["output"] is None
    assert config["training"]["data"] == [multi_source_data.name]


def test_tiny_run_learns_the_planted_signal(trained_run):
    config = read_config(trained_run)
    assert config.metrics["accuracy"] >= 0.9
    assert config.metrics["roc_auc"] >= 0.95
    with open(trained_run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["phase"] for r in rows] == ["frozen"] * 3 + ["finetune"] * 4
    assert list(rows[0]) == ["epoch", "phase", "phase_epoch", "lr", "train_loss",
                             "train_accuracy", "val_loss", "val_accuracy", "val_auc"]  # fmt: skip


def test_split_is_recorded_and_groups_stay_together(trained_run):
    records = read_split_csv(trained_run / "split.csv")
    assert {r.split for r in records} == {"train", "valid", "test"}
    assert {r.source for r in records} == {"alpha", "beta"}
    splits_by_group: dict[str, set] = {}
    for r in records:
        splits_by_group.setdefault(r.group, set()).add(r.split)
    assert all(len(s) == 1 for s in splits_by_group.values())


def test_frozen_phase_leaves_the_backbone_unchanged(multi_source_data, tmp_path):
    run_dir = tmp_path / "frozen"
    train(tiny_options(multi_source_data, run_dir, finetune_epochs=0))
    torch.manual_seed(0)
    initial = build_model("test_efficientnet").backbone.state_dict()
    trained = load_file(run_dir / "model.safetensors")
    for key, value in initial.items():
        assert torch.equal(trained[f"backbone.{key}"], value), key


@pytest.mark.parametrize(
    ("kill_after", "variant"),
    [(1, ""), (3, ""), (3, "balanced"), (3, "ema")],
    ids=["frozen-phase", "fine-tuning", "fine-tuning-balanced", "fine-tuning-averaged"],
)
def test_killed_run_resumes_to_the_identical_result(
    multi_source_data, tmp_path, kill_after, variant
):
    options = dict(image_size=64, frozen_epochs=2, finetune_epochs=3, augment="paper")
    extra = {
        "": [],
        "balanced": ["--balance-sources", "--cache-copies", "2"],
        "ema": ["--ema", "0.9"],  # the average is part of the state a resumed run goes on from
    }[variant]
    options |= {
        "": {}, "balanced": dict(balance_sources=True, cache_copies=2), "ema": dict(ema=0.9)
    }[variant]  # fmt: skip
    reference = tmp_path / "reference"
    train(tiny_options(multi_source_data, reference, **options))

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "deepfake_detect.cli", "train",
               "--data", str(multi_source_data), "--output", str(killed),
               "--backbone", "test_efficientnet", "--no-pretrained", "--image-size", "64",
               "--frozen-epochs", "2", "--finetune-epochs", "3", "--batch-size", "16",
               "--lr", "3e-3", "--finetune-lr", "1e-3", "--patience", "10",
               "--workers", "0", *extra]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_epoch(killed / "state.json", epoch=kill_after, process=process)
    process.send_signal(signal.SIGKILL)  # inside the next epoch, or writing its checkpoint
    process.wait()
    state = json.loads((killed / "state.json").read_text())
    assert kill_after <= state["epoch"] < 5 and not state["done"]
    assert not (killed / "model.safetensors").exists()

    resume = subprocess.run([*command, "--resume"], capture_output=True, text=True)
    assert resume.returncode == 0, resume.stderr
    assert (killed / "history.csv").read_text() == (reference / "history.csv").read_text()
    ours = load_file(killed / "model.safetensors")
    theirs = load_file(reference / "model.safetensors")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def wait_for_epoch(state_file: Path, epoch: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()
        try:
            if json.loads(state_file.read_text())["epoch"] >= epoch:
                return
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.005)
    raise AssertionError("training did not reach the epoch in time")


def test_evaluate_uses_the_recorded_test_split(trained_run, multi_source_data, tmp_path):
    detector = load_detector(trained_run, device="cpu")
    records = evaluation_records([multi_source_data], "test", detector.model_dir)
    recorded = {r.path for r in read_split_csv(trained_run / "split.csv") if r.split == "test"}
    assert {r.path for r in records} == recorded
    metrics = evaluate(detector, records, tmp_path / "eval")
    assert metrics["n_images"] == len(records)
    assert metrics["accuracy"] >= 0.85
    assert metrics["weights_sha256"] == detector.config.weights_sha256
    for name in ("metrics.json", "classification_report.txt", "confusion_matrix.png", "roc.png",
                 "reliability.png", "scores.csv"):  # fmt: skip
        assert (tmp_path / "eval" / name).stat().st_size > 0
    with open(tmp_path / "eval" / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["path"]) for r in rows] == [r.path for r in records]
    assert [int(r["label"]) for r in rows] == [r.label for r in records]
    assert metrics["figure_history"] is False
    # the same images with the diffusion faces' history: scored, and scored differently
    aged = evaluate(detector, records, tmp_path / "aged", history=True)
    assert aged["n_images"] == len(records) and aged["figure_history"] is True
    assert aged["loss"] != pytest.approx(metrics["loss"], abs=1e-6)


def test_predict_scores_images_and_reports_bad_ones(trained_run, multi_source_data, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    detector = load_detector(trained_run, device="cpu")
    images = sorted((multi_source_data / "alpha" / "fake").iterdir())[:5]
    predictions = detector.score([*images, bad], batch_size=2)
    assert [p.path for p in predictions] == [str(p) for p in [*images, bad]]
    assert all(0.0 <= p.score <= 1.0 and p.label in ("real", "fake") for p in predictions[:-1])
    assert predictions[-1].score is None and "unsupported" in predictions[-1].error


def test_loader_rejects_changed_weights_and_unknown_format(trained_run, tmp_path):
    copy = tmp_path / "model"
    copy.mkdir()
    config = json.loads((trained_run / "config.json").read_text())
    (copy / "model.safetensors").write_bytes((trained_run / "model.safetensors").read_bytes())
    (copy / "config.json").write_text(json.dumps({**config, "weights_sha256": "0" * 64}))
    with pytest.raises(ModelError, match="sha256"):
        load_detector(copy)
    (copy / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(ModelError, match="format version 99"):
        load_detector(copy)


def test_a_config_of_wrong_types_is_a_model_error_naming_the_field(trained_run, tmp_path):
    config = json.loads((trained_run / "config.json").read_text())
    (tmp_path / "model.safetensors").write_bytes((trained_run / "model.safetensors").read_bytes())
    for change, message in [
        ({"image_size": 224.5}, "image_size must be an integer, got 224.5"),
        ({"image_size": 10**6}, "image_size must be within [8, 4096], got 1000000"),
        ({"threshold": None}, "threshold must be a number, got None"),
        ({"temperature": "1"}, "temperature must be a number, got '1'"),
        ({"format_version": "1"}, "format_version must be an integer, got '1'"),
        ({"mean": ["a", 0, 0]}, "mean and std must hold numbers"),
        ({"training": []}, "training must be a JSON object"),
    ]:
        (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(ModelError) as caught:
            load_detector(tmp_path)
        assert str(caught.value) == message


def test_a_new_run_that_fails_to_start_leaves_nothing(multi_source_data, tmp_path, monkeypatch):
    """A failure while the run folder is being set up takes the folder away again, so the same
    command can simply be run again (not refused as a used folder)."""
    import deepfake_detect.training.run_state as run_state

    def disk_full(path, data):
        raise OSError(28, "No space left on device", str(path))

    options = tiny_options(multi_source_data, tmp_path / "runs" / "new", finetune_epochs=0)
    with monkeypatch.context() as patched:
        patched.setattr(run_state, "atomic_write_json", disk_full)
        with pytest.raises(OSError, match="No space left"):
            train(options)
    assert list((tmp_path / "runs").iterdir()) == []
    assert train(options).config.metrics


def test_train_refuses_a_used_folder_and_a_missing_resume(multi_source_data, trained_run, tmp_path):
    with pytest.raises(DataError, match="not empty"):
        train(tiny_options(multi_source_data, trained_run))
    with pytest.raises(DataError, match="already finished"):
        train(tiny_options(multi_source_data, trained_run, resume=True))
    with pytest.raises(DataError, match="nothing to resume"):
        train(tiny_options(multi_source_data, tmp_path / "new", resume=True))


def test_resume_refuses_changed_options(multi_source_data, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_options(multi_source_data, run_dir, frozen_epochs=1, finetune_epochs=0))
    (run_dir / "state.json").unlink()  # as if killed before finishing
    with pytest.raises(DataError, match="seed 0 -> 1"):
        train(tiny_options(multi_source_data, run_dir, frozen_epochs=1, finetune_epochs=0,
                           seed=1, resume=True))  # fmt: skip


def test_train_stops_on_an_unreadable_image(tmp_path):
    from conftest import write_class_folders

    data = write_class_folders(tmp_path / "data", 10, seed=3)
    (data / "fake" / "fake003.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(DataError, match="1 of .* images cannot be read"):
        train(tiny_options(data, tmp_path / "run", valid_fraction=0.3, test_fraction=0.2))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"augment": "heavy"}, "--augment"),
        ({"select_by": "f1"}, "--select-by"),
        ({"batch_size": 0}, "--batch-size"),
        ({"frozen_epochs": 0, "finetune_epochs": 0}, "at least one epoch"),
        ({"device": "tpu"}, "--device"),
        ({"head": "huge"}, "--head"),
        ({"seed": -1}, "--seed"),
        ({"pretrained_file": "/nonexistent.pth"}, "no such file"),
        ({"init_from": "/nonexistent"}, "not a model folder"),
        ({"reencode": "jpeg:50-20"}, "backwards"),
        ({"train_crop": 16}, "--train-crop"),
        ({"stem_stride": 3}, "--stem-stride"),
        ({"drop_path": 1.0}, "--drop-path"),
        ({"drop_path": -0.1}, "--drop-path"),
        ({"image_size": 64, "train_crop": 96}, "--train-crop"),
        ({"threshold_rule": "median"}, "--threshold-rule"),
    ],
)
def test_bad_training_options_fail_before_any_work(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        tiny_options(tmp_path, tmp_path / "run", **changes)


def test_init_from_starts_where_the_model_ended(trained_run, multi_source_data, tmp_path):
    """A warm restart begins from the trained model's weights, head included, and records the
    model it began from by name only."""
    options = dict(frozen_epochs=0, finetune_epochs=1, seed=1)
    trained = load_file(trained_run / "model.safetensors")
    fresh = Trainer(tiny_options(multi_source_data, tmp_path / "fresh", **options))
    assert not torch.equal(fresh.model.state_dict()["head.0.weight"], trained["head.0.weight"])
    warm = tiny_options(multi_source_data, tmp_path / "warm", init_from=trained_run, **options)
    start = Trainer(warm).model.state_dict()
    assert start.keys() == trained.keys()
    for key, value in trained.items():
        assert torch.equal(start[key], value), key
    shutil.rmtree(tmp_path / "warm")
    train(warm)
    config = json.loads((tmp_path / "warm" / "config.json").read_text())
    assert config["training"]["init_from"] == trained_run.name


def test_measure_validation_repeats_the_runs_own_figure(trained_run, multi_source_data, tmp_path):
    """A trained model measured by a trainer of the same options gives the validation loss its
    best epoch recorded."""
    with open(trained_run / "history.csv") as f:
        best = min(float(row["val_loss"]) for row in csv.DictReader(f))
    trainer = Trainer(tiny_options(multi_source_data, tmp_path / "run", init_from=trained_run))
    assert trainer.measure_validation()["val_loss"] == pytest.approx(best, abs=1e-5)


def test_validation_loss_script_measures_a_model_on_a_runs_validation(
    trained_run, tmp_path, capsys
):
    script = load_script("validation_loss")
    with open(trained_run / "history.csv") as f:
        best = min(float(row["val_loss"]) for row in csv.DictReader(f))
    assert script.main(["--run", str(trained_run), "--model", str(trained_run)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("seed 0: ") and f"validation loss {best:.4f}," in line
    with pytest.raises(SystemExit, match="no readable options.json"):
        script.main(["--run", str(tmp_path), "--model", str(trained_run)])
    moved = tmp_path / "moved"  # a run whose recorded split its options no longer give
    shutil.copytree(trained_run, moved)
    text = (moved / "split.csv").read_text()
    (moved / "split.csv").write_text(text.replace(",valid\n", ",train\n", 1))
    with pytest.raises(SystemExit, match="no longer give its validation images"):
        script.main(["--run", str(moved), "--model", str(trained_run)])


def test_validation_loss_script_refits_the_threshold_of_a_run(trained_run, tmp_path, capsys):
    """--calibrate repeats the end of the run: on the run's own model it finds the stored
    temperature and threshold; --output writes that model with the chosen rule's numbers."""
    script = load_script("validation_loss")
    stored = read_config(trained_run)
    out = tmp_path / "refit"
    args = ["--run", str(trained_run), "--model", str(trained_run), "--calibrate"]
    assert script.main([*args, "--output", str(out), "--threshold-rule", "max-balanced"]) == 0
    printed = capsys.readouterr().out
    found = f"temperature {stored.temperature:.4f}, threshold {stored.threshold:.4f}"
    assert f"recalibrated: {found}" in printed
    refit = read_config(out)
    assert refit.weights_sha256 == stored.weights_sha256
    assert refit.temperature == pytest.approx(stored.temperature)
    assert refit.metrics["threshold_rule"] == "max-balanced"
    record = refit.metrics["threshold_refit"]
    assert record["from"]["threshold"] == stored.threshold and record["rule"] == "max-balanced"
    with pytest.raises(SystemExit):  # the folder exists now: refused, nothing overwritten
        script.main([*args, "--output", str(out)])
    with pytest.raises(SystemExit):
        script.main([*args[:-1], "--output", str(tmp_path / "x")])  # --output needs --calibrate
    assert not (tmp_path / "x").exists()


def test_init_from_refuses_another_network(trained_run, multi_source_data, tmp_path):
    other = tmp_path / "linear"
    shutil.copytree(trained_run, other)
    config = json.loads((other / "config.json").read_text())
    config["head"] = "linear"
    (other / "config.json").write_text(json.dumps(config))
    options = tiny_options(multi_source_data, tmp_path / "run", init_from=other)
    with pytest.raises(DetectorError, match="its head is linear, this run's paper"):
        train(options)
    assert not (tmp_path / "run").exists()


def test_paper_head_has_the_papers_layers():
    model = build_model("test_efficientnet", "paper")
    layers = [(type(m).__name__, getattr(m, "in_features", None), getattr(m, "out_features", None))
              for m in model.head]  # fmt: skip
    features = model.backbone.num_features
    assert layers == [
        ("Linear", features, 512), ("ReLU", None, None), ("Dropout", None, None),
        ("Linear", 512, 128), ("ReLU", None, None), ("Dropout", None, None),
        ("Linear", 128, 64), ("ReLU", None, None), ("Linear", 64, 1),
    ]  # fmt: skip
    assert [m.p for m in model.head if isinstance(m, torch.nn.Dropout)] == [0.5, 0.5]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2,)


def test_train_keeps_near_duplicates_on_one_side_of_the_split(tmp_path):
    """The same people in two sources (at another size) must never straddle the split."""
    import numpy as np
    from conftest import photo_like, write_class_folders

    from deepfake_detect.data.prepare import prepare_dataset

    data = tmp_path / "data"
    write_class_folders(data / "alpha", 30, seed=4)
    write_class_folders(data / "beta", 30, seed=5, fmt="JPEG")
    rng = np.random.default_rng(6)
    for i in range(10):  # the same photos in both sources, smaller and re-encoded in beta
        image = photo_like(rng, 64)
        image.save(data / "alpha" / "real" / f"real{i:03d}.png")
        image.resize((48, 48)).save(data / "beta" / "real" / f"real{i:03d}.jpg", quality=90)
    options = tiny_options(data, tmp_path / "run", valid_fraction=0.3, test_fraction=0.3)
    made = prepare_dataset(options.data_spec(), tmp_path / "split.csv").made
    side = {r.path.relative_to(data).as_posix(): r.split for r in made}
    pairs = [(f"alpha/real/real{i:03d}.png", f"beta/real/real{i:03d}.jpg") for i in range(10)]
    assert all(side[a] == side[b] for a, b in pairs)
    groups = {r.group for r in made if r.path.name in {"real000.png", "real000.jpg"}}
    assert len(groups) == 1


def test_training_on_crops_evaluates_on_whole_images(multi_source_data, tmp_path):
    """--train-crop trains on windows; the saved model still takes the whole input size."""
    options = tiny_options(
        multi_source_data, tmp_path / "run", image_size=48, train_crop=32, augment="flip",
        frozen_epochs=1, finetune_epochs=1, feature_cache=False,
    )  # fmt: skip
    result = train(options)
    assert result.config.image_size == 48
    assert result.config.training["train_crop"] == 32
    predictions = load_detector(tmp_path / "run").score([next(multi_source_data.rglob("*.png"))])
    assert 0.0 <= predictions[0].score <= 1.0


def test_stochastic_depth_acts_only_while_fine_tuning(multi_source_data, tmp_path):
    """A frozen backbone runs as the feature cache does (no dropped blocks); fine-tuning drops
    blocks with BatchNorm statistics still frozen; the saved model scores deterministically."""
    from timm.layers import DropPath

    options = tiny_options(
        multi_source_data, tmp_path / "run", drop_path=0.5, frozen_epochs=1, finetune_epochs=1,
        feature_cache=False,
    )  # fmt: skip
    trainer = Trainer(options)
    backbone = trainer.model.backbone
    trainer._set_mode("frozen", trainer.model)
    assert not any(m.training for m in backbone.modules())
    assert trainer.model.head.training
    trainer._set_mode("finetune", trainer.model)
    drops = [m for m in backbone.modules() if isinstance(m, DropPath)]
    assert drops and all(m.training for m in drops)
    assert not any(m.training for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    result = trainer.run()
    assert result.config.training["drop_path"] == 0.5
    image = next(multi_source_data.rglob("*.png"))
    detector = load_detector(tmp_path / "run")
    assert detector.score([image])[0].score == detector.score([image])[0].score


def test_stratified_sampler_gives_every_stratum_an_equal_share():
    from deepfake_detect.training.loop import StratifiedSampler

    keys = ["small"] * 6 + ["large"] * 30  # 36 draws: 18 each
    draws = list(StratifiedSampler(keys, torch.Generator().manual_seed(0)))
    images = [i % len(keys) for i in draws]  # the k-th repeat comes as index + k * 36
    assert len(draws) == len(set(draws)) == len(keys)
    assert sum(keys[i] == "small" for i in images) == sum(keys[i] == "large" for i in images) == 18
    assert [images.count(i) for i in range(6)] == [3] * 6  # without replacement, pass by pass
    assert len({i for i in images if i >= 6}) == 18  # a large stratum: 18 images, none twice
    again = list(StratifiedSampler(keys, torch.Generator().manual_seed(0)))
    other = list(StratifiedSampler(keys, torch.Generator().manual_seed(1)))
    assert again == draws and other != draws


def test_stratum_shares_split_an_epoch_by_weight_and_equal_weights_as_before():
    from fractions import Fraction

    from deepfake_detect.training.loop import stratum_shares

    for total, n in [(36, 2), (37, 3), (1000, 7), (5, 6)]:
        before = [total // n + (i < total % n) for i in range(n)]  # the equal-share rule
        assert stratum_shares(total, [Fraction(1, n)] * n) == before
    assert stratum_shares(100, [Fraction(1, 2), Fraction(1, 3), Fraction(1, 6)]) == [50, 33, 17]
    with pytest.raises(ValueError, match="sum to 1"):
        stratum_shares(10, [Fraction(1, 2), Fraction(1, 3)])


def test_a_one_class_source_does_not_tilt_the_classes():
    """Three two-class sources and a fake-only one: reals 1/6 each, fakes 1/8 each, so each
    class is half of the epoch (an equal share per stratum would give fakes 4/7)."""
    from fractions import Fraction

    from deepfake_detect.training.loop import StratifiedSampler, class_balanced_weights

    keys = [(s, lab) for s in "abc" for lab in (0, 1) for _ in range(50)] + [("diff", 1)] * 70
    weights = class_balanced_weights(keys)
    assert {weights[(s, 0)] for s in "abc"} == {Fraction(1, 6)}
    assert {weights[(s, 1)] for s in ("a", "b", "c", "diff")} == {Fraction(1, 8)}
    draws = [i % len(keys) for i in StratifiedSampler(keys, torch.Generator(), weights)]
    fakes = sum(keys[i][1] for i in draws)
    assert len(draws) == len(keys) and abs(fakes - len(keys) / 2) <= 2  # whole draws: 184 of 370
    assert abs(sum(keys[i][0] == "diff" for i in draws) - len(keys) / 8) < 1
    two_class = [(s, lab) for s in "ab" for lab in (0, 1)]
    assert set(class_balanced_weights(two_class).values()) == {Fraction(1, 4)}  # as before


@pytest.mark.parametrize("cache_copies", [0, 2])
def test_balance_sources_feeds_each_source_and_class_equally(
    multi_source_data, tmp_path, monkeypatch, cache_copies
):
    from deepfake_detect.training import trainer as training

    epochs: list[tuple] = []  # (keys, drawn indices, dataset) of each balanced epoch

    class Spy(training.StratifiedSampler):
        def __init__(self, keys, generator, weights=None):
            super().__init__(keys, generator, weights)
            self.keys = list(keys)

        def __iter__(self):
            order = list(super().__iter__())
            epochs.append((self.keys, order, self.dataset))
            return iter(order)

    def spy_loader(dataset, batch_size, workers=0, generator=None, sampler=None):
        if sampler is not None:
            sampler.dataset = dataset  # what the loader really reads
        return make_loader(dataset, batch_size, workers, generator, sampler)

    make_loader = training.make_loader
    monkeypatch.setattr(training, "StratifiedSampler", Spy)
    monkeypatch.setattr(training, "make_loader", spy_loader)
    run_dir = tmp_path / "run"
    train(tiny_options(multi_source_data, run_dir, frozen_epochs=1, finetune_epochs=1,
                       balance_sources=True, cache_copies=cache_copies))  # fmt: skip
    assert len(epochs) == 2  # one epoch of each phase
    for keys, order, dataset in epochs:
        assert len(set(order)) == len(order)
        n = len(keys)
        # what is loaded is what the sampler was told: each (source, class) gets a quarter,
        # although alpha has 1.5x beta's images
        labels = [int(dataset[i][1]) for i in order]
        assert labels == [keys[i % n][1] for i in order]
        strata = [keys[i % n] for i in order]
        counts = [strata.count(key) for key in set(keys)]
        assert len(counts) == 4 and max(counts) - min(counts) <= 1, counts
        if isinstance(dataset, training.ImageDataset):  # fine-tuning: a repeat is a new view
            assert [(r.source, r.label) for r in dataset.records] == keys
            repeat = next(i for i in order if i >= n)
            assert not torch.equal(dataset[repeat][0], dataset[repeat % n][0])
    assert json.loads((run_dir / "options.json").read_text())["balance_sources"] is True


def test_resume_accepts_a_run_from_before_an_option_existed(multi_source_data, tmp_path):
    run_dir = tmp_path / "run"
    options = dict(frozen_epochs=1, finetune_epochs=0)
    train(tiny_options(multi_source_data, run_dir, **options))
    stored = json.loads((run_dir / "options.json").read_text())
    del stored["balance_sources"]  # written by a release without it
    (run_dir / "options.json").write_text(json.dumps(stored))
    (run_dir / "state.json").unlink()  # as if killed before finishing
    train(tiny_options(multi_source_data, run_dir, resume=True, **options))
    with pytest.raises(DataError, match="balance_sources False -> True"):
        (run_dir / "state.json").unlink()
        train(tiny_options(multi_source_data, run_dir, resume=True, balance_sources=True,
                           **options))  # fmt: skip


def test_split_seed_holds_the_split_while_the_seed_changes(multi_source_data, tmp_path):
    """Ensemble members need other seeds on one split: --split-seed fixes the split alone."""
    from deepfake_detect.data.prepare import prepare_dataset

    def split_of(**kwargs):
        options = tiny_options(multi_source_data, tmp_path / "run", audit=False, **kwargs)
        made = prepare_dataset(options.data_spec(), tmp_path / "no-split.csv").made
        return {(r.path, r.split) for r in made}

    first = split_of(seed=0)
    assert split_of(seed=1) != first  # the seed alone moves the split...
    assert split_of(seed=1, split_seed=0) == first  # ...unless the split has its own seed
    assert split_of(seed=0, split_seed=1) == split_of(seed=1)
    with pytest.raises(ValueError, match="--split-seed"):
        tiny_options(multi_source_data, tmp_path / "run", split_seed=-1)


def test_resume_takes_a_split_seed_equal_to_the_seed_as_no_change(multi_source_data, tmp_path):
    """--split-seed 0 on a run started with --seed 0 asks for the split it already has."""
    from deepfake_detect.errors import DataError
    from deepfake_detect.training.options import check_same_options

    stored = tmp_path / "options.json"
    stored.write_text(json.dumps(tiny_options(multi_source_data, tmp_path / "run").to_json()))
    check_same_options(stored, tiny_options(multi_source_data, tmp_path / "run", split_seed=0))
    with pytest.raises(DataError, match="split_seed 0 -> 1"):
        check_same_options(stored, tiny_options(multi_source_data, tmp_path / "run", split_seed=1))


def test_split_manifest_keeps_held_out_images_held_out_when_the_data_grows(
    multi_source_data, tmp_path
):
    """A grown dataset (a new source beside the old ones) keeps the manifest's split for every
    image it names, matched by content, and splits only the new images around them."""
    import shutil

    from conftest import write_class_folders

    from deepfake_detect.data.manifest import manifest_rows, write_manifest
    from deepfake_detect.data.prepare import prepare_dataset

    spec = tiny_options(multi_source_data, tmp_path / "run", audit=False).data_spec()
    old = prepare_dataset(spec, tmp_path / "none.csv").made
    manifest = tmp_path / "split_manifest.csv"
    write_manifest(manifest_rows(old, multi_source_data), manifest)

    grown = tmp_path / "grown"
    shutil.copytree(multi_source_data, grown)
    write_class_folders(grown / "gamma", 30, seed=3)
    options = tiny_options(grown, tmp_path / "run", audit=False, split_manifest=manifest, seed=5)
    made = prepare_dataset(options.data_spec(), tmp_path / "none.csv").made

    split_of = {(r.source, r.path.name): r.split for r in made}
    assert all(split_of[r.source, r.path.name] == r.split for r in old)
    gamma = [r.split for r in made if r.source == "gamma"]
    assert set(gamma) == {"train", "valid", "test"}
    assert options.to_json()["split_manifest"] == str(manifest)


def test_a_manifest_that_names_every_image_is_recorded_as_the_run_split(
    multi_source_data, tmp_path
):
    """No image is left for a seeded split, yet the run still records its split: without
    split.csv, evaluate would make the default seeded split and score training images."""
    from deepfake_detect.data.datasets import read_split_csv
    from deepfake_detect.data.manifest import manifest_rows, write_manifest
    from deepfake_detect.data.prepare import model_split, prepare_dataset
    from deepfake_detect.training.run_state import start_run_folder

    spec = tiny_options(multi_source_data, tmp_path / "first", audit=False, seed=3).data_spec()
    old = prepare_dataset(spec, tmp_path / "none.csv").made
    manifest = tmp_path / "split_manifest.csv"
    write_manifest(manifest_rows(old, multi_source_data), manifest)

    options = tiny_options(
        multi_source_data, tmp_path / "run", audit=False, split_manifest=manifest
    )
    made = prepare_dataset(options.data_spec(), tmp_path / "none.csv").made
    assert made is not None and len(made) == len(old)
    start_run_folder(options, made)
    recorded = {r.path.resolve(): r.split for r in read_split_csv(tmp_path / "run" / "split.csv")}
    assert recorded == {r.path.resolve(): r.split for r in old}
    unsplit = [dataclasses.replace(r, split=None) for r in old]
    again = {r.path.resolve(): r.split for r in model_split(unsplit, tmp_path / "run", seed=0)}
    assert again == recorded


def test_split_manifest_with_other_labels_or_no_match_is_refused(multi_source_data, tmp_path):
    from deepfake_detect.data.datasets import index_dataset
    from deepfake_detect.data.manifest import apply_manifest_splits, manifest_rows

    records = index_dataset([multi_source_data])
    rows = manifest_rows([replace_split(r, "test") for r in records[:3]], multi_source_data)
    flipped = [dataclasses.replace(row, label=1 - row.label) for row in rows]
    with pytest.raises(DataError, match="in the split manifest"):
        apply_manifest_splits(records, flipped)
    with pytest.raises(DataError, match="names none of the images"):
        apply_manifest_splits(records[3:], rows)
    with pytest.raises(ValueError, match="--split-manifest"):
        tiny_options(multi_source_data, tmp_path / "run", split_manifest=tmp_path / "missing.csv")


def test_manifest_names_fake_only_images_from_the_data_root(multi_source_data, tmp_path):
    """A run's --fake-only folder lies beside the data root: its images are named by a path
    that climbs out of the root, which still finds them on another machine; any other image
    outside the root is refused."""
    from PIL import Image

    from deepfake_detect.data.datasets import ImageRecord, index_dataset
    from deepfake_detect.data.manifest import manifest_rows

    beside = tmp_path / "fake-only" / "diffusion-faces"
    beside.mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 10, 10)).save(beside / "SDXL_0001.jpg")
    fake_only = ImageRecord(beside / "SDXL_0001.jpg", 1, "diffusion-faces", "d/1", "test")
    records = [*index_dataset([multi_source_data])[:2], fake_only]
    rows = manifest_rows(records, multi_source_data, beside=[beside])
    (row,) = [r for r in rows if r.source == "diffusion-faces"]
    assert (multi_source_data / row.path).resolve() == fake_only.path.resolve()
    assert row.path.startswith("../") and row.split == "test"
    with pytest.raises(DataError, match="not under the data root"):
        manifest_rows(records, multi_source_data)


def replace_split(record, split):
    return dataclasses.replace(record, split=split)


def test_test_labels_never_move_the_threshold_or_the_temperature(tmp_path):
    """Both are fitted on validation alone: swapping the test split's classes changes nothing."""
    import shutil

    from conftest import write_class_folders

    def layout(root: Path, swap_test: bool) -> Path:
        for split, n, seed in (("train", 40, 1), ("valid", 16, 2), ("test", 12, 3)):
            write_class_folders(root / split, n, seed=seed)
        if swap_test:
            test = root / "test"
            (test / "real").rename(test / "was-real")
            (test / "fake").rename(test / "real")
            (test / "was-real").rename(test / "fake")
        return root

    configs = []
    for swap in (False, True):
        data = layout(tmp_path / f"data-{swap}", swap)
        train(tiny_options(data, tmp_path / f"run-{swap}", audit=False))
        configs.append(read_config(tmp_path / f"run-{swap}"))
        shutil.rmtree(data / "train")  # nothing else is needed from it
    assert configs[0].temperature == configs[1].temperature != 1.0
    assert configs[0].threshold == configs[1].threshold
    assert configs[0].metrics["roc_auc"] == configs[1].metrics["roc_auc"]


def test_no_calibrate_keeps_the_temperature_at_one(multi_source_data, tmp_path):
    config = train(tiny_options(multi_source_data, tmp_path / "run", calibrate=False)).config
    assert config.temperature == 1.0 and "ece_before_calibration" not in config.metrics


def test_the_threshold_rule_is_applied_and_recorded(trained_run, multi_source_data, tmp_path):
    """The default rule is the balanced recalibration, --threshold-rule max-balanced the arg-max
    of balanced accuracy; each run says which chose its threshold."""
    options = tiny_options(multi_source_data, tmp_path / "run", threshold_rule="max-balanced")
    config = train(options).config
    assert config.metrics["threshold_rule"] == "max-balanced"
    assert read_config(trained_run).metrics["threshold_rule"] == "recalibrated"
    # the rule changes nothing before the end of the run: the same weights
    assert config.weights_sha256 == read_config(trained_run).weights_sha256


def test_calibration_chooses_the_threshold_by_the_rule_on_calibrated_scores():
    from deepfake_detect.evaluation.metrics import choose_threshold, recalibrated_threshold
    from deepfake_detect.evaluation.scoring import calibration_from_logits

    generator = torch.Generator().manual_seed(0)
    labels = (torch.rand(400, generator=generator) < 0.5).float()
    logits = 3.0 * torch.randn(400, generator=generator) + 4.0 * (labels - 0.5) + 2.0
    chosen = {}
    for rule, rule_function in (("recalibrated", recalibrated_threshold),
                                ("max-balanced", choose_threshold)):  # fmt: skip
        temperature, threshold, metrics = calibration_from_logits(
            logits, labels, threshold_rule=rule
        )
        scores = torch.sigmoid(logits.double() / temperature).numpy()
        assert threshold == pytest.approx(rule_function(labels.numpy().astype(int), scores))
        assert metrics["threshold_rule"] == rule and metrics["threshold"] == threshold
        chosen[rule] = threshold
    assert chosen["recalibrated"] != pytest.approx(chosen["max-balanced"])


def test_fake_only_folders_join_the_split_as_their_own_source(multi_source_data, tmp_path):
    """Diffusion faces come without real photos: a source of fakes only, split like any other."""
    from conftest import synthetic_image

    from deepfake_detect.data.prepare import prepare_dataset

    rng = np__random(7)
    diffusion = tmp_path / "diffusion-faces"
    diffusion.mkdir()
    for i in range(30):
        synthetic_image(rng, True).save(diffusion / f"SDXL_{i:04d}.jpg", "JPEG", quality=75)
    options = tiny_options(multi_source_data, tmp_path / "run", audit=False, fake_only=[diffusion])
    made = prepare_dataset(options.data_spec(), tmp_path / "none.csv").made
    ours = [r for r in made if r.source == "diffusion-faces"]
    assert len(ours) == 30 and {r.label for r in ours} == {1}
    assert {r.split for r in ours} == {"train", "valid", "test"}
    assert options.to_record()["fake_only"] == ["diffusion-faces"]
    clash = tmp_path / "alpha"
    clash.mkdir()
    (diffusion / "SDXL_0000.jpg").rename(clash / "x.jpg")
    with pytest.raises(DataError, match="a source named 'alpha' exists already"):
        prepare_dataset(
            tiny_options(
                multi_source_data, tmp_path / "run", audit=False, fake_only=[clash]
            ).data_spec(),
            tmp_path / "none.csv",
        )


def np__random(seed):
    import numpy as np

    return np.random.default_rng(seed)


def test_source_train_size_thins_one_source_and_keeps_the_split(multi_source_data, tmp_path):
    """The points of a learning curve: fewer training images of one source, the same split."""
    from deepfake_detect.data.prepare import prepare_dataset

    def splits(**changes):
        options = tiny_options(multi_source_data, tmp_path / "run", audit=False, **changes)
        return prepare_dataset(options.data_spec())

    full = splits()
    for n in (10, 0):
        thin = splits(source_train_size=[f"alpha={n}"])
        assert {r.path for r in thin.valid} == {r.path for r in full.valid}
        assert [r for r in thin.train if r.source == "beta"] == [
            r for r in full.train if r.source == "beta"
        ]
        alpha = [r for r in thin.train if r.source == "alpha"]
        assert len(alpha) == n and sum(r.label for r in alpha) == n // 2
        assert {r.path for r in alpha} <= {r.path for r in full.train}
    with pytest.raises(DataError, match="no training images of that source"):
        splits(source_train_size=["gamma=4"])
    for bad in ("alpha", "alpha=-1", "=3", "alpha=x"):
        with pytest.raises(ValueError, match="SOURCE=N"):
            tiny_options(multi_source_data, tmp_path / "run", source_train_size=[bad])
    with pytest.raises(ValueError, match="given twice"):
        tiny_options(multi_source_data, tmp_path / "run", source_train_size=["alpha=2", "alpha=4"])


def test_weight_average_warms_up_its_decay_and_lends_the_model_its_weights():
    model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    average = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    average.update(model)  # d = min(0.9, 2 / 11): the first step counts for most
    d = 2 / 11
    expected = d * start["0.weight"] + (1 - d) * model[0].weight.detach()
    assert torch.allclose(average.average["0.weight"], expected)
    for _ in range(200):  # the weights stand still: the average reaches them
        average.update(model)
    own = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
    for _ in range(3):
        average.update(model)
    assert average.updates == 204
    d = 0.9  # warmed up: each step moves the average a tenth of the way
    assert torch.allclose(average.average["0.weight"], own["0.weight"] + (1 - d**3))
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    with average.applied(model):
        assert torch.equal(model[0].weight, average.average["0.weight"])
        assert torch.equal(model[1].num_batches_tracked, trained["1.num_batches_tracked"])
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)
    with pytest.raises(DataError, match="lacks averaged weights"):
        average.load({})


def test_an_averaged_run_keeps_the_average(multi_source_data, trained_run, tmp_path):
    """With --ema the fine-tuned model is the average of its steps, not the last one."""
    averaged = tmp_path / "averaged"
    train(tiny_options(multi_source_data, averaged, ema=0.9))
    ours = load_file(averaged / "model.safetensors")
    plain = load_file(trained_run / "model.safetensors")
    assert any(not torch.equal(ours[k], plain[k]) for k in ours)
    assert read_config(averaged).training["ema"] == 0.9
    assert read_config(averaged).metrics["roc_auc"] >= 0.95
    with pytest.raises(ValueError, match="--ema"):
        tiny_options(multi_source_data, tmp_path / "bad", ema=1.5)
