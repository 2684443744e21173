"""`calibrate`: a new model folder whose threshold and temperature were fitted on the user's own
images; every engine applies them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_model, write_class_folders

from deepfake_detect.data.datasets import index_dataset
from deepfake_detect.evaluation.calibration import recalibrate, threshold_for_fpr
from deepfake_detect.inference import load_detector


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate")
    data = write_class_folders(root / "mine", 40, seed=5)
    model = make_model(root / "model", seed=2, threshold=0.5, temperature=1.0)
    return data, model


def test_threshold_for_fpr_counts_reals_at_or_above_it():
    labels = np.array([0] * 10 + [1] * 5)
    scores = np.array([0.1 * i for i in range(10)] + [0.95] * 5)
    t = threshold_for_fpr(labels, scores, 0.2)
    assert ((scores[:10] >= t).sum()) == 2 and t == pytest.approx(0.8)
    assert threshold_for_fpr(labels, scores, 0.0) > 0.9  # no real image above it
    with pytest.raises(ValueError, match="--target-fpr"):
        threshold_for_fpr(labels, scores, 1.0)


@pytest.mark.parametrize("target", [0.05, 0.2])
def test_the_target_false_positive_rate_is_reached_on_the_images(setup, tmp_path, target):
    data, model = setup
    records = index_dataset([data])
    fitted = recalibrate(load_detector(model), records, tmp_path / "new", target_fpr=target,
                         data_names=["mine"])  # fmt: skip
    for engine in ("onnx", "torch"):  # every engine applies the new numbers
        detector = load_detector(tmp_path / "new", engine=engine)
        assert detector.threshold == pytest.approx(fitted["threshold"])
        predictions = detector.score([r.path for r in records])
        reals = [p.label == "fake" for p, r in zip(predictions, records, strict=True)
                 if r.label == 0]  # fmt: skip
        assert np.mean(reals) <= target
    config = json.loads((tmp_path / "new" / "config.json").read_text())
    record = config["metrics"]["recalibration"]
    assert record["data"] == ["mine"] and record["target_fpr"] == target
    assert record["from_model"]["threshold"] == 0.5 and record["images"] == len(records)
    assert json.loads((model / "config.json").read_text())["threshold"] == 0.5  # unchanged


def test_the_cli_writes_a_folder_and_refuses_bad_requests(setup, tmp_path, capsys, monkeypatch):
    from test_cli import run_cli

    data, model = setup
    out = tmp_path / "mine-calibrated"
    code, stdout, err = run_cli(["calibrate", "--model", str(model), "--data", str(data),
                                 "--output", str(out)], capsys, monkeypatch)  # fmt: skip
    assert code == 0, err
    assert "threshold 0.5000 ->" in stdout and (out / "model.safetensors").is_file()
    code, _, err = run_cli(["calibrate", "--model", str(model), "--data", str(data),
                            "--output", str(out)], capsys, monkeypatch)  # fmt: skip
    assert code == 2 and "not empty" in err
    code, _, err = run_cli(["calibrate", "--model", str(model), "--data", str(data),
                            "--output", str(tmp_path / "x"), "--target-fpr", "1.5"],
                           capsys, monkeypatch)  # fmt: skip
    assert code == 2 and "--target-fpr must be within" in err
    assert not (tmp_path / "x").exists()
    code, _, err = run_cli(["calibrate", "--model", str(model), "--data", str(data),
                            "--output", str(tmp_path / "x"), "--threshold-rule", "median"],
                           capsys, monkeypatch)  # fmt: skip
    assert code == 2 and "--threshold-rule must be one of" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("rule", ["recalibrated", "max-balanced"])
def test_the_threshold_rule_chooses_and_is_recorded(setup, tmp_path, rule):
    from deepfake_detect.evaluation.calibration import raw_logits
    from deepfake_detect.evaluation.metrics import select_threshold

    data, model = setup
    records = index_dataset([data])
    fitted = recalibrate(load_detector(model), records, tmp_path / "new", threshold_rule=rule)
    logits, labels, _ = raw_logits(load_detector(model), records)
    scores = 1.0 / (1.0 + np.exp(-logits / fitted["temperature"]))
    assert fitted["threshold"] == pytest.approx(select_threshold(labels, scores, rule))
    config = json.loads((tmp_path / "new" / "config.json").read_text())
    assert config["metrics"]["recalibration"]["rule"] == rule
    assert config["metrics"]["recalibration"]["precision"] == "fp32"  # the scores it fitted


def test_the_cli_fits_the_scores_the_new_folder_will_give(setup, tmp_path, capsys, monkeypatch):
    # a folder whose int8 file is its default precision (the bundled model's is) scores in
    # int8, but the new folder carries no int8 file: auto fits fp32's scores, without a warning
    import onnx
    from test_cli import run_cli

    from deepfake_detect.inference.export import export_onnx
    from deepfake_detect.inference.onnx_files import DEFAULT_KEY, ONNX_NAMES

    data, _ = setup
    model = make_model(tmp_path / "model", seed=2, threshold=0.5, temperature=1.0)
    int8 = model / ONNX_NAMES["int8"]
    export_onnx(model, int8, precision="int8", images=[data])
    marked = onnx.load(str(int8))
    marked.metadata_props.add(key=DEFAULT_KEY, value="{}")
    onnx.save(marked, str(int8))
    assert load_detector(model).engine.precision == "int8"
    out = tmp_path / "mine-calibrated"
    code, _, err = run_cli(["calibrate", "--model", str(model), "--data", str(data),
                            "--output", str(out)], capsys, monkeypatch)  # fmt: skip
    assert code == 0 and "int8" not in err, err
    recorded = json.loads((out / "config.json").read_text())["metrics"]["recalibration"]
    assert recorded["precision"] == "fp32"
