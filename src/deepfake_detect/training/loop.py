"""The pieces of one training epoch: seeded shuffling, balanced sampling and the optimisation
pass. Every epoch's randomness derives from (seed, epoch), so a resumed run repeats it."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from fractions import Fraction

import torch
from torch import nn
from torch.utils.data import Dataset, Sampler

from deepfake_detect.devices import autocast, to_device
from deepfake_detect.errors import DataError
from deepfake_detect.progress import progress_bar


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    """Seed torch (dropout: each rank its own masks) for this epoch and return the shuffling
    generator, the same on every rank (they take shares of one global order)."""
    torch.manual_seed(seed * 100_003 + epoch + rank * 7_919_000_017)
    return torch.Generator().manual_seed(seed * 100_019 + epoch)


class StratifiedSampler(Sampler[int]):
    """An epoch of len(keys) indices with a set share for every stratum (key): `weights` maps
    each key to its fraction of the epoch (they sum to 1), equal for all keys by default.

    Each stratum is drawn without replacement, pass after pass, so a small stratum is seen more
    than once an epoch and a large one less than once; the order comes from `generator`. The k-th
    pass yields index + k * len(keys), so that a dataset can give a repeat its own augmentation
    (`ImageDataset` does; see `Repeats` for one that cannot).
    """

    def __init__(
        self,
        keys: Sequence[Hashable],
        generator: torch.Generator,
        weights: Mapping[Hashable, Fraction] | None = None,
    ) -> None:
        strata: dict[Hashable, list[int]] = {}
        for index, key in enumerate(keys):
            strata.setdefault(key, []).append(index)
        order = sorted(strata)
        self.strata = [torch.tensor(strata[key]) for key in order]
        self.total = len(keys)
        if weights is None:
            weights = {key: Fraction(1, len(order)) for key in order}
        self.shares = stratum_shares(self.total, [Fraction(weights[key]) for key in order])
        self.generator = generator

    def __len__(self) -> int:
        return self.total

    def __iter__(self) -> Iterator[int]:
        g = self.generator
        picks = []
        for members, share in zip(self.strata, self.shares, strict=True):
            passes = -(-share // len(members))
            order = [
                members[torch.randperm(len(members), generator=g)] + k * self.total
                for k in range(passes)
            ]
            picks.append(torch.cat(order)[:share])
        epoch = torch.cat(picks)
        return iter(epoch[torch.randperm(len(epoch), generator=g)].tolist())


def stratum_shares(total: int, weights: Sequence[Fraction]) -> list[int]:
    """Whole draws per stratum that sum to `total`, each the floor of total * weight, the rest
    one each to the largest remainders (ties to the earlier stratum): equal weights give the
    first total % n strata one more."""
    if sum(weights) != 1 or min(weights) <= 0:
        raise ValueError(f"stratum weights must be positive and sum to 1, not {weights}")
    exact = [total * w for w in weights]
    shares = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


def class_balanced_weights(keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], Fraction]:
    """Weights for (source, label) strata: each class half of an epoch, shared equally among
    the sources that hold it. Where every source holds both classes this is an equal share for
    every stratum; a source of one class only (`--fake-only`) does not tilt the classes."""
    strata = set(keys)
    labels = {label for _, label in strata}
    per_label = {label: sum(1 for _, lab in strata if lab == label) for label in labels}
    return {(s, lab): Fraction(1, len(labels) * per_label[lab]) for s, lab in strata}


class Repeats(Dataset):
    """A dataset that a StratifiedSampler may index past its end: a repeat is the same item
    (cached features have no augmentation to vary)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index % len(self.dataset)]


class WeightAverage:
    """An exponential moving average of a model's floating-point weights (`--ema`): after each
    optimisation step every averaged tensor moves a share 1 - d of the way to the model's, with
    d = min(decay, (1 + n) / (10 + n)) after n steps, so that the first steps, far from the
    average's start, do not linger in it (timm's and TensorFlow's warm-up of the decay).

    Averaging the weights along the end of training lands in a wider, flatter minimum than the
    last step's (Izmailov et al. 2018, SWA; Cha et al. 2021, SWAD, for other domains)."""

    def __init__(self, model: nn.Module, decay: float, updates: int = 0) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"the average's decay must lie in (0, 1), not {decay}")
        self.decay, self.updates = decay, updates
        self.average = {
            k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for key, value in model.state_dict().items():
            if key in self.average:
                self.average[key].lerp_(value.detach(), 1 - d)

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The model's state with the averaged tensors in place of its own (integer buffers,
        such as BatchNorm's batch count, are the model's)."""
        return {k: self.average.get(k, v) for k, v in model.state_dict().items()}

    def load(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Take the averaged tensors from a checkpoint (a resumed run)."""
        missing = self.average.keys() - tensors.keys()
        if missing:
            raise DataError(f"the run's checkpoint lacks averaged weights ({sorted(missing)[0]})")
        for key, value in self.average.items():
            value.copy_(tensors[key])

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own again after it."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.state_dict(model))
        try:
            yield
        finally:
            model.load_state_dict(own)


def train_epoch(
    module, loader, optimizer, device, desc="train", progress=True,
    after_step: Callable[[], None] | None = None,
) -> dict[str, float]:  # fmt: skip
    """One pass over the loader; returns mean loss, accuracy at 0.5, the number of images and
    throughput. `after_step` runs after every optimisation step (a weight average's update)."""
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    total_loss, correct, seen, start = 0.0, 0, 0, time.perf_counter()
    with progress_bar(len(loader.sampler), desc, progress) as bar:
        for x, y in loader:
            x, y = to_device(x, device), y.to(device, dtype=torch.float32)
            with autocast(device):
                logits = module(x).reshape(-1).float()
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            (loss / len(y)).backward()
            optimizer.step()
            if after_step is not None:
                after_step()
            total_loss += loss.item()
            correct += ((logits >= 0) == (y >= 0.5)).sum().item()
            seen += len(y)
            bar.update(len(y))
            bar.set_postfix(loss=f"{total_loss / seen:.4f}")
    seconds = time.perf_counter() - start
    return {
        "train_loss": total_loss / seen,
        "train_accuracy": correct / seen,
        "images": seen,
        "seconds": seconds,
        "images_per_second": seen / max(seconds, 1e-9),
    }

