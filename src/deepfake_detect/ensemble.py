"""Several trained detectors as one: the mean of their logits, with one validation-chosen threshold.

Members trained on the same split with different recipes make different mistakes (one model may be
strong on one source and weak on another); averaging their logits keeps what each does well. The
ensemble is an ordinary model folder (config.json + model.safetensors) that every command loads.

    deepfake-detect ensemble --model runs/a --model runs/b --output runs/ab
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepfake_detect.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    ModelConfig,
    load_model_weights,
    read_config,
    save_model,
)
from deepfake_detect.datasets import (
    SPLIT_NAME,
    ImageRecord,
    read_split_csv,
    select,
    write_split_csv,
)
from deepfake_detect.errors import DataError, ModelError

ENSEMBLE_BACKBONE = "ensemble"
# What every member must share: the ensemble preprocesses each image once for all of them.
SHARED_FIELDS = ("image_size", "mean", "std", "interpolation")
MEMBER_FIELDS = ("name", "backbone", "head", "stem_stride", "temperature", "weights_sha256")


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
    for config, path in zip(configs, dirs, strict=True):
        if config.members:
            raise ModelError(f"{path}: is an ensemble itself; give its members instead")
        for name in SHARED_FIELDS:
            if getattr(config, name) != getattr(configs[0], name):
                raise ModelError(
                    f"{path}: {name} {getattr(config, name)} differs from {dirs[0]}'s "
                    f"{getattr(configs[0], name)}: members must preprocess images the same way"
                )


def shared_split(dirs: Sequence[Path]) -> list[ImageRecord]:
    """The members' common split (each run's split.csv, the same for all)."""
    splits = []
    for path in dirs:
        if not (path / SPLIT_NAME).is_file():
            raise DataError(
                f"{path}: no {SPLIT_NAME}: the ensemble's threshold is chosen on the members' "
                "validation split, so members must be training run folders"
            )
        records = read_split_csv(path / SPLIT_NAME)
        splits.append((records, {(r.path.resolve(), r.split) for r in records}))
    for path, (_, keys) in zip(dirs[1:], splits[1:], strict=True):
        if keys != splits[0][1]:
            raise DataError(
                f"{path}: trained on another split than {dirs[0]}: the ensemble's validation "
                "images would be training images of a member"
            )
    if {r.label for r in select(splits[0][0], "valid")} != {0, 1}:
        raise DataError(f"{dirs[0]}: the validation split needs both real and fake images")
    return splits[0][0]


def validation_scores(net, config: ModelConfig, records, batch_size, workers, device):
    """Scores of the validation images, transformed as the first member's training did."""
    from deepfake_detect.training import ImageDataset, make_loader, predict_logits
    from deepfake_detect.transforms import EvalTransform, RandomJPEG, TrainTransform, reencode_steps

    training = config.training
    jpeg = tuple(s for s in reencode_steps(training.get("reencode")) if isinstance(s, RandomJPEG))
    transform = TrainTransform(config, (), jpeg) if jpeg else EvalTransform(config)
    dataset = ImageDataset(records, transform, seed=int(training.get("seed", 0)))
    loader = make_loader(dataset, batch_size, workers)
    logits, labels = predict_logits(net, loader, device, "valid", progress=False)
    return torch.sigmoid(logits).numpy(), labels.numpy().astype(int)


def build_ensemble(
    model_dirs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    half: bool = True,
    batch_size: int = 32,
    workers: int = 2,
    device: str = "auto",
) -> ModelConfig:
    """Combine trained run folders into one model folder at output; returns its config.

    The threshold is chosen on the members' shared validation split, with the images re-encoded
    as in training. With half=True the weights are stored as float16 (half the size; they are
    computed in float32 when loaded).
    """
    from deepfake_detect.devices import resolve_device
    from deepfake_detect.metrics import choose_threshold, compute_metrics
    from deepfake_detect.models import model_from_config

    dirs = [Path(d) for d in model_dirs]
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise DataError(f"{output}: exists and is not an empty folder")
    configs = [read_config(d) for d in dirs]
    check_members(configs, dirs)
    split = shared_split(dirs)
    torch_device = resolve_device(device)
    pairs = list(zip(configs, dirs, strict=True))
    members = [model_from_config(c, load_model_weights(d, c)) for c, d in pairs]
    net = EnsembleNet(members, [c.temperature for c in configs]).to(torch_device).eval()
    first = configs[0]
    config = ModelConfig(
        backbone=ENSEMBLE_BACKBONE,
        head="mean-logit",
        **{name: getattr(first, name) for name in SHARED_FIELDS},
        name=output.resolve().name,
        version=time.strftime("%Y.%m.%d", time.gmtime()),
        training={
            "combine": "mean of the members' logits",
            "threshold": "chosen on the members' validation split, re-encoded as the first "
            "member's training images were",
            "members": [str(d) for d in dirs],
        },
        members=[
            {
                **{k: getattr(c, k) for k in MEMBER_FIELDS},
                "run": str(d),
                "training": c.training,
                "metrics": c.metrics,
            }
            for c, d in pairs
        ],
    )
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    if half:  # round the weights first, so the threshold is chosen for the stored model
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        net.load_state_dict(state)
    valid = select(split, "valid")
    scores, labels = validation_scores(net, first, valid, batch_size, workers, torch_device)
    config.threshold = choose_threshold(labels, scores)
    config.metrics = compute_metrics(labels, scores, config.threshold, n_bootstrap=200)
    config.metrics["selected_by"] = "each member's own validation choice"
    created = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    try:  # the split first: a folder with a config.json is a finished model
        write_split_csv(split, output / SPLIT_NAME)
        save_model(output, state, config)
    except BaseException:
        for name in (SPLIT_NAME, WEIGHTS_NAME, CONFIG_NAME):
            (output / name).unlink(missing_ok=True)
        if created:
            output.rmdir()
        raise
    return config
