"""A trained detector from its config and weights: one network, or an ensemble of several."""

from __future__ import annotations

import torch
from torch import nn

from deepfake_detect.errors import ModelError
from deepfake_detect.models.config import ModelConfig
from deepfake_detect.models.ensemble import EnsembleNet, member_config
from deepfake_detect.models.networks import build_model


def model_from_config(config: ModelConfig, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Rebuild a trained detector (no pretrained download) and load its weights strictly.

    Weights stored as float16 are loaded into the float32 model (computed in float32).
    """
    if config.members:
        members = [member_config(config, m) for m in config.members]
        model: nn.Module = EnsembleNet(
            [build_model(m.backbone, m.head, stem_stride=m.stem_stride) for m in members],
            [m.temperature for m in members],
        )
        described = " + ".join(f"{m.backbone}/{m.head}" for m in members)
    else:
        model = build_model(config.backbone, config.head, stem_stride=config.stem_stride)
        described = f"{config.backbone}/{config.head}"
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(f"weights do not match {described}: {first}") from None
    return model.eval()
