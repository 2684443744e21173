"""Where tensors run: device choice, bf16 mixed precision on a GPU, channels-last everywhere."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported by the functions that need it: checking a name does not
    import torch

DEVICES = ("auto", "cpu", "cuda")


def check_device_name(name: str) -> str:
    if name not in DEVICES and not re.fullmatch(r"cuda:\d+", name):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, not {name!r}")
    return name


def resolve_device(name: str) -> torch.device:
    import torch

    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was asked for, but no CUDA GPU is available")
    return torch.device(name)


def autocast(device: torch.device):
    """bf16 mixed precision on a GPU; plain float32 on the CPU, where it would be slower."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Images (N, C, H, W) go channels-last, as the networks are (`channels_last`): on a GPU
    for its tensor cores, on the CPU because oneDNN's convolutions run faster so (Lite0 at
    256 px on two cores: a training step 1.6x, a forward pass 1.4-1.6x, measured by
    scripts/train_throughput.py)."""
    import torch

    x = x.to(device, non_blocking=True)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def channels_last(module: torch.nn.Module) -> torch.nn.Module:
    """The network's 4-d weights in channels-last order (see `to_device`)."""
    import torch

    return module.to(memory_format=torch.channels_last)
