"""Records as PyTorch datasets: decoded, transformed images with their labels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from deepfake_detect.data.datasets import ImageRecord
from deepfake_detect.data.images import load_image
from deepfake_detect.data.transforms import sample_rng


class ImageDataset(Dataset):
    """Decoded, transformed images with labels; randomness from (seed, epoch, index)."""

    def __init__(self, records: Sequence[ImageRecord], transform, seed: int = 0) -> None:
        self.records = list(records)
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, float]:
        # index + k * len: the k-th repeat of an image in one epoch, with its own augmentation
        record = self.records[index % len(self.records)]
        rng = sample_rng(self.seed, self.epoch, index)
        image = load_image(record.path)
        if record.crop is not None:
            image = image.crop(record.crop)
        array = self.transform(image, rng)
        return torch.from_numpy(array), float(record.label)


def make_loader(dataset, batch_size, workers=0, generator=None, sampler=None) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=generator is not None and sampler is None,
        generator=generator,
        sampler=sampler,
        num_workers=workers,
    )

