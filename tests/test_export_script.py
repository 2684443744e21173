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
