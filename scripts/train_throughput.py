"""Training images/s of a backbone on random tensors: fp32, bf16 autocast, and bf16 with
channels-last, as `train` runs them on a GPU (no decoding: the model's own speed).

    python scripts/train_throughput.py --backbone legacy_xception --image-size 299 --device cuda
    torchrun --standalone --nproc-per-node gpu scripts/train_throughput.py --device cuda

Each mode takes `--warmup` steps, then times `--steps` optimisation steps (forward, backward,
AdamW) of the whole network with the paper's head, BatchNorm frozen as in fine-tuning. Under
torchrun the model is wrapped in DistributedDataParallel and the images/s are summed over the
ranks. Prints a table, or JSON with --json; each mode's last loss shows that it trained.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from torch import nn

from deepfake_detect.devices import autocast
from deepfake_detect.distributed import all_max, all_sum, start_world
from deepfake_detect.models.networks import build_model

MODES = {  # name: (bf16 autocast, channels-last)
    "fp32": (False, False),
    "fp32+channels-last": (False, True),
    "bf16": (True, False),
    "bf16+channels-last": (True, True),
}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    world, device = start_world(args.device)
    rows = []
    for backbone, size in args.models:
        for mode in args.modes:
            rows.append(measure(backbone, size, mode, args, world, device))
    if not world.main:
        return 0
    if args.json:
        print(json.dumps({"device": device_name(device), "ranks": world.size, "rows": rows}))
        return 0
    print(f"{device_name(device)}, {world.size} process(es), batch {args.batch_size} per process")
    print(f"{'backbone':<24} {'size':>4}  {'mode':<20} {'images/s':>9}  last loss")
    for r in rows:
        print(f"{r['backbone']:<24} {r['image_size']:>4}  {r['mode']:<20} "
              f"{r['images_per_second']:>9.1f}  {r['last_loss']:.4f}")  # fmt: skip
    return 0


def measure(backbone: str, size: int, mode: str, args, world, device) -> dict:
    bf16, channels_last = MODES[mode]
    torch.manual_seed(0)
    model = build_model(backbone, "paper", pretrained=False).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    for layer in model.modules():  # as fine-tuning runs it
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()
    step_model = model
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        step_model = DistributedDataParallel(model, device_ids=ids)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = nn.BCEWithLogitsLoss()
    x = torch.rand(args.batch_size, 3, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = (torch.arange(args.batch_size, device=device) % 2).float()
    loss = torch.zeros(())
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            synchronize(device)
            start = time.perf_counter()
        with autocast(device) if bf16 else torch.autocast(device.type, enabled=False):
            logits = step_model(x).reshape(-1).float()
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(device)
    seconds = all_max(world, device, time.perf_counter() - start)
    (images,) = all_sum(world, device, float(args.steps * args.batch_size))
    return {
        "backbone": backbone,
        "image_size": size,
        "mode": mode,
        "batch_size": args.batch_size,
        "images_per_second": images / seconds,
        "last_loss": float(loss.item()),
    }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


def parse_model(text: str) -> tuple[str, int]:
    name, sep, size = text.partition("@")
    if not sep or not size.isdigit() or int(size) < 32:
        raise argparse.ArgumentTypeError(f"give BACKBONE@SIZE (size >= 32), not {text!r}")
    return name, int(size)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", dest="models", action="append", type=parse_model, metavar="BACKBONE@SIZE",
        help="repeatable; default: legacy_xception@299 and tf_efficientnet_lite0@256",
    )  # fmt: skip
    parser.add_argument("--mode", dest="modes", action="append", choices=list(MODES))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    args.models = args.models or [("legacy_xception", 299), ("tf_efficientnet_lite0", 256)]
    args.modes = args.modes or list(MODES)
    if args.batch_size < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--batch-size and --steps must be at least 1, --warmup at least 0")
    return args


if __name__ == "__main__":
    sys.exit(main())
