"""The frozen phase's feature cache: pooled backbone features of every training and validation
image, computed once per run folder, so that the head trains in seconds an epoch."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from deepfake_detect.data.datasets import ImageRecord
from deepfake_detect.data.loaders import ImageDataset, make_loader
from deepfake_detect.evaluation.scoring import predict_logits
from deepfake_detect.models.checkpoint import load_tensors, save_tensors

log = logging.getLogger("deepfake_detect")
CACHE_NAME = "feature-cache.safetensors"


@dataclass(frozen=True)
class FeaturePass:
    """One pass of the backbone over a split, with its transform; `epoch` seeds the pass's
    randomness (each augmented copy of the training set has its own)."""

    split: str
    records: Sequence[ImageRecord]
    transform: object
    epoch: int


def cached_features(
    path: Path, backbone: nn.Module, passes: Sequence[FeaturePass], **loader: object
) -> tuple[TensorDataset, TensorDataset, float | None]:
    """The train and valid feature datasets at path, computed first when the file is not
    there; returns them with the seconds spent computing (None when read from the file)."""
    seconds = None
    if path.exists():
        tensors = load_tensors(path)
    else:
        start = time.perf_counter()
        tensors = extract_features(backbone, passes, **loader)
        save_tensors(path, tensors)
        seconds = time.perf_counter() - start
        log.info("feature cache built in %.1f s", seconds)
    return (
        TensorDataset(tensors["train_features"], tensors["train_labels"]),
        TensorDataset(tensors["valid_features"], tensors["valid_labels"]),
        seconds,
    )


def extract_features(
    backbone: nn.Module,
    passes: Sequence[FeaturePass],
    *,
    seed: int,
    batch_size: int,
    workers: int,
    device: torch.device,
    progress: bool,
) -> dict[str, torch.Tensor]:
    """Features and labels of every pass, the passes of one split one after the other."""
    out: dict[str, list[torch.Tensor]] = {}
    backbone.eval()
    for p in passes:
        dataset = ImageDataset(p.records, p.transform, seed=seed)
        dataset.epoch = p.epoch
        loader = make_loader(dataset, batch_size, workers)
        feats, labels = predict_logits(backbone, loader, device, f"features {p.split}", progress)
        out.setdefault(f"{p.split}_features", []).append(feats.reshape(len(dataset), -1))
        out.setdefault(f"{p.split}_labels", []).append(labels)
    return {k: torch.cat(v) for k, v in out.items()}
