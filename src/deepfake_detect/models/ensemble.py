"""Several detectors as one network: the mean of their tempered logits (`EnsembleNet`), or one
network with the mean of their weights; and the checks that members can be combined. Building
an ensemble from trained runs is training's (`deepfake_detect.training.ensembling`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepfake_detect.errors import ModelError
from deepfake_detect.models.config import (
    ModelConfig,
)

ENSEMBLE_BACKBONE = "ensemble"
# What every member must share: the ensemble preprocesses each image once for all of them.
SHARED_FIELDS = ("image_size", "mean", "std", "interpolation")
MEMBER_FIELDS = ("name", "backbone", "head", "stem_stride", "temperature", "weights_sha256")
NETWORK_FIELDS = ("backbone", "head", "stem_stride")
COMBINES = ("logits", "weights")


class EnsembleNet(nn.Module):
    """Member detectors on the same input; the output is the mean of their (tempered) logits."""

    def __init__(self, members: Sequence[nn.Module], temperatures: Sequence[float]) -> None:
        super().__init__()
        if len(members) != len(temperatures) or len(members) < 2:
            raise ValueError("an ensemble needs two or more members, each with a temperature")
        self.members = nn.ModuleList(members)
        self.temperatures = tuple(float(t) for t in temperatures)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = [m(x) / t for m, t in zip(self.members, self.temperatures, strict=True)]
        return torch.stack(logits).mean(0)


def member_config(ensemble: ModelConfig, member: dict[str, Any]) -> ModelConfig:
    """A member's own config: the ensemble's preprocessing with the member's network."""
    shared = {name: getattr(ensemble, name) for name in SHARED_FIELDS}
    fields = {k: member[k] for k in MEMBER_FIELDS if k in member}
    extra = {"training": member.get("training", {}), "metrics": member.get("metrics", {})}
    return ModelConfig(**shared, **fields, **extra)


def check_members(configs: Sequence[ModelConfig], dirs: Sequence[Path]) -> None:
    if len(configs) < 2:
        raise ModelError("an ensemble needs at least two --model folders")
    seen: dict[str, Path] = {}  # weights hash -> member
    for config, path in zip(configs, dirs, strict=True):
        if config.members:
            raise ModelError(f"{path}: is an ensemble itself; give its members instead")
        key = config.weights_sha256 or str(path.resolve())
        if key in seen:
            raise ModelError(f"{path}: the same model as {seen[key]}; give different members")
        seen[key] = path
        reencode, first = config.training.get("reencode"), configs[0].training.get("reencode")
        if reencode != first:
            raise ModelError(
                f"{path}: trained with --reencode {reencode}, {dirs[0]} with {first}: the "
                "threshold is chosen on validation images re-encoded as in training"
            )
        for name in SHARED_FIELDS:
            if getattr(config, name) != getattr(configs[0], name):
                raise ModelError(
                    f"{path}: {name} {getattr(config, name)} differs from {dirs[0]}'s "
                    f"{getattr(configs[0], name)}: members must preprocess images the same way"
                )


def check_same_network(configs: Sequence[ModelConfig], dirs: Sequence[Path]) -> None:
    ours = tuple(getattr(configs[0], f) for f in NETWORK_FIELDS)
    for config, path in zip(configs, dirs, strict=True):
        theirs = tuple(getattr(config, f) for f in NETWORK_FIELDS)
        if theirs != ours:
            raise ModelError(
                f"{path}: network {theirs} differs from {dirs[0]}'s {ours}: only the same "
                "architecture can be averaged"
            )


def average_weights(
    states: Sequence[dict[str, torch.Tensor]], dirs: Sequence[Path]
) -> dict[str, torch.Tensor]:
    """Element-wise mean of same-shaped state dicts, in float32 (integer buffers: the first's)."""
    first = states[0]
    for state, path in zip(states[1:], dirs[1:], strict=True):
        if state.keys() != first.keys() or any(state[k].shape != first[k].shape for k in first):
            raise ModelError(f"{path}: its weights do not have {dirs[0]}'s names and shapes")
    return {
        key: torch.stack([s[key].float() for s in states]).mean(0)
        if first[key].is_floating_point() else first[key]
        for key in first
    }  # fmt: skip
