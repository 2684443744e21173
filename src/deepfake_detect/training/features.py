"""The frozen phase's feature cache: pooled backbone features of every training and validation
image, computed once per run folder, so that the head trains in seconds an epoch."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from deepfake_detect.data.datasets import ImageRecord
from deepfake_detect.data.loaders import ImageDataset
from deepfake_detect.models.checkpoint import load_tensors, save_tensors

log = logging.getLogger("deepfake_detect")
CACHE_NAME = "feature-cache.safetensors"
Predict = Callable[[Dataset, str], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class FeaturePass:
    """One pass of the backbone over a split, with its transform; `epoch` seeds the pass's
    randomness (each augmented copy of the training set has its own)."""

    split: str
    records: Sequence[ImageRecord]
    transform: object
    epoch: int


def cached_features(
    path: Path, passes: Sequence[FeaturePass], predict: Predict, *, seed: int, write: bool = True
) -> tuple[TensorDataset, TensorDataset, float | None]:
    """The train and valid feature datasets at path, computed first when the file is not
    there (and written when `write`: rank 0 only); returns them with the seconds spent computing
    (None when read from the file)."""
    seconds = None
    if path.exists():
        tensors = load_tensors(path)
    else:
        start = time.perf_counter()
        tensors = extract_features(passes, predict, seed=seed)
        if write:
            save_tensors(path, tensors)
        seconds = time.perf_counter() - start
        log.info("feature cache built in %.1f s", seconds)
    return (
        TensorDataset(tensors["train_features"], tensors["train_labels"]),
        TensorDataset(tensors["valid_features"], tensors["valid_labels"]),
        seconds,
    )


def extract_features(
    passes: Sequence[FeaturePass], predict: Predict, *, seed: int
) -> dict[str, torch.Tensor]:
    """Features and labels of every pass, the passes of one split one after the other;
    `predict(dataset, desc)` runs the backbone (in eval mode) over a dataset, in order."""
    out: dict[str, list[torch.Tensor]] = {}
    for p in passes:
        dataset = ImageDataset(p.records, p.transform, seed=seed)
        dataset.epoch = p.epoch
        feats, labels = predict(dataset, f"features {p.split}")
        out.setdefault(f"{p.split}_features", []).append(feats.reshape(len(dataset), -1))
        out.setdefault(f"{p.split}_labels", []).append(labels)
    return {k: torch.cat(v) for k, v in out.items()}
