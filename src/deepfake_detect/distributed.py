"""Running under torchrun: one process per GPU (or per share of a CPU), on PyTorch's own
process group.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in every process it starts; a process started
without them is a world of one, and every function here is then a no-op, so the single-process
code path is the distributed one with one rank. GPUs talk over NCCL, CPUs over gloo.

Data is split across ranks by `ShardSampler`: every rank computes the same global order (same
seed, same epoch), pads it to a multiple of the world size by repeating its first items, as
`torch.utils.data.DistributedSampler` does, and takes every world-size-th item from its rank
on. The k-th batch of each rank is then a slice of the k-th global batch, so per-process batches
of B/N images on N ranks train as one process with batches of B. Scoring shares (validation,
the feature cache) are not padded, so no image is scored twice; `gather_by_index` puts every
rank's results back into input order.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from deepfake_detect.errors import DataError

if TYPE_CHECKING:
    import torch

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the only process that logs, shows progress and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def launched_world(environ: dict[str, str] | None = None) -> World:
    """The world torchrun describes in the environment (a world of one without it)."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return SINGLE
    try:
        rank, size, local = (int(env.get(name, "0")) for name in LAUNCH_VARIABLES)
    except ValueError:
        values = ", ".join(f"{n}={env.get(n)!r}" for n in LAUNCH_VARIABLES)
        raise DataError(f"torchrun's environment is malformed ({values})") from None
    if not (size >= 1 and 0 <= rank < size and local >= 0):
        raise DataError(f"torchrun's environment is inconsistent (RANK={rank}, WORLD_SIZE={size})")
    return World(rank, size, local)


def start_world(device_name: str) -> tuple[World, torch.device]:
    """Join the process group torchrun prepared (once per process) and pick this rank's
    device: `cuda:LOCAL_RANK` on a GPU machine, the CPU otherwise."""
    import torch
    import torch.distributed as dist

    from deepfake_detect.devices import resolve_device

    world = launched_world()
    if not world.distributed:
        return world, resolve_device(device_name)
    device = resolve_device("cuda" if device_name.startswith("cuda") else device_name)
    if device.type == "cuda":
        if torch.cuda.device_count() <= world.local_rank:
            raise DataError(
                f"rank {world.rank} is local rank {world.local_rank}, but this machine has "
                f"{torch.cuda.device_count()} GPUs: start at most that many processes per node"
            )
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        atexit.register(_leave)
    return world, device


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def check_same(world: World, what: str, description: str) -> None:
    """Raise on every rank when the ranks' descriptions of `what` differ (different data
    folders on different nodes, a file changed between launches)."""
    if not world.distributed:
        return
    import torch.distributed as dist

    digest = hashlib.sha256(description.encode()).hexdigest()[:16]
    digests: list[Any] = [None] * world.size
    dist.all_gather_object(digests, digest)
    differ = [rank for rank, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise DataError(
            f"ranks disagree about {what}: rank {differ[0]} sees {digests[differ[0]]}, rank 0 "
            f"{digests[0]}; every node must see the same data folders and options"
        )


def all_sum(world: World, device: torch.device, *values: float) -> list[float]:
    """The sums over all ranks of a few numbers (losses, counts)."""
    if not world.distributed:
        return list(values)
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_max(world: World, device: torch.device, value: float) -> float:
    if not world.distributed:
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.item()


def gather_objects(world: World, value: Any) -> list[Any]:
    """Every rank's value, in rank order (pickled: for small things such as result rows)."""
    if not world.distributed:
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, value)
    return out


class ShardSampler:
    """This rank's share of a global order (a sampler, or range(n) when none is given).

    The global order is drawn anew on each iteration, so a shuffling base sampler reshuffles
    every epoch, identically on every rank. `indices` keeps the last share handed out, for
    `gather_by_index`.
    """

    def __init__(self, world: World, base: Iterable[int] | int, pad: bool = True) -> None:
        self.world = world
        self.base = range(base) if isinstance(base, int) else base
        self.pad = pad
        self.indices: list[int] = []

    def __len__(self) -> int:
        assert isinstance(self.base, Sized)
        if self.pad:
            return -(-len(self.base) // self.world.size)
        return len(range(self.world.rank, len(self.base), self.world.size))

    def __iter__(self) -> Iterator[int]:
        self.indices = shard(list(self.base), self.world, self.pad)
        return iter(self.indices)


def shard(order: list[int], world: World, pad: bool = True) -> list[int]:
    """This rank's every N-th item of `order`; with `pad` (training: every rank takes as many
    steps), `order` is first padded to a multiple of N with its first items."""
    if not order or not pad:
        return order[world.rank :: world.size]
    total = -(-len(order) // world.size) * world.size
    padded = (order * (total // len(order) + 1))[:total]
    return padded[world.rank :: world.size]


def gather_by_index(
    world: World, values: torch.Tensor, indices: list[int], total: int
) -> torch.Tensor:
    """Put every rank's rows (values[i] belongs to item indices[i]) back into one tensor of
    `total` rows in item order (shares may differ in length by one, and a padded repeat
    overwrites its original with the same row). A flat `values` holds len(indices) equal rows
    one after the other (features flattened)."""
    if not world.distributed:
        return values
    import torch
    import torch.distributed as dist

    device = values.device if dist.get_backend() != "nccl" else torch.device("cuda")
    count = len(indices)
    local = values.to(device).reshape(count, -1) if count else values.new_zeros((0, 0))
    width = int(all_max(world, device, float(local.shape[1])))  # a rank of no items knows none
    longest = -(-total // world.size)  # all_gather wants equal shapes: pad to the longest share
    rows_local = torch.zeros((longest, width), dtype=values.dtype, device=device)
    if count:
        rows_local[:count] = local
    index = torch.full((longest,), -1, dtype=torch.int64, device=device)
    index[:count] = torch.tensor(indices, dtype=torch.int64, device=device)
    rows = [torch.empty_like(rows_local) for _ in range(world.size)]
    where = [torch.empty_like(index) for _ in range(world.size)]
    dist.all_gather(rows, rows_local)
    dist.all_gather(where, index)
    where_all, rows_all = torch.cat(where), torch.cat(rows)
    real = where_all >= 0
    out = torch.empty((total, width), dtype=values.dtype, device=device)
    out[where_all[real]] = rows_all[real]
    shape = (-1,) if values.dim() == 1 else (total, *values.shape[1:])
    return out.reshape(shape).to(values.device)


def current_world() -> World:
    """The world this process has joined (`start_world`); a world of one when it has not, so
    library calls made outside the CLI stay single-process even under torchrun. Never imports
    torch: a process that has not imported torch.distributed has joined no group."""
    dist = sys.modules.get("torch.distributed")
    joined = dist is not None and dist.is_available() and dist.is_initialized()
    return launched_world() if joined else SINGLE


def map_across_ranks(
    world: World,
    items: Sequence[T],
    work: Callable[[list[T]], Iterable[R]],
    block: int,
    align: int = 1,
) -> Iterator[R]:
    """work(items) in input order (one result per item), shared out over the ranks a round at
    a time: each round, every rank does a contiguous part of up to `block` items, cut at
    multiples of `align` (the batch size: each batch then holds the images a single process
    would batch together, so the scores are the same to the bit); every rank gets every
    result as the round ends. One rank: work(items) itself, streamed."""
    if not world.distributed:
        yield from work(list(items))
        return
    step = block * world.size
    for start in range(0, len(items), step):
        chunk = items[start : start + step]
        mine = list(work(list(chunk[rank_slices(len(chunk), world.size, align)[world.rank]])))
        for part in gather_objects(world, mine):
            yield from part


def rank_slices(total: int, size: int, align: int) -> list[slice]:
    """`size` contiguous slices covering range(total), each a multiple of `align` long but the
    last non-empty one; later ones may be empty."""
    per_rank = -(-total // (size * align)) * align
    return [slice(min(r * per_rank, total), min((r + 1) * per_rank, total)) for r in range(size)]
