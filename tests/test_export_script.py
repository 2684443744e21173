"""scripts/export_bundled_model.py: the model card's recipe comes from config.json."""

import pytest
from conftest import load_script

from deepfake_detect.checkpoint import ModelConfig


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
    assert words["stem_note"] == ""


def test_recipe_describes_the_papers_augmentation_on_whole_images(export):
    words = export.recipe(config(augment="paper", feature_cache=False))
    assert words["augmentation"].startswith("the whole 256 px input, with the paper's")
    assert words["frozen_phase"] == "2 epochs training the head on the frozen backbone"


def test_a_run_without_reencoding_is_refused(export):
    with pytest.raises(SystemExit, match="--reencode"):
        export.recipe(config(reencode=None))
