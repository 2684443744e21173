"""The resumable state of a training run, kept in its run folder without pickle.

`state.json` is the commit point: it is replaced atomically after the tensors it names
(`state-EPOCH.safetensors` with model and optimizer tensors, `best-EPOCH.safetensors`) are on disk,
so a run killed at any moment resumes from its last complete epoch.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from deepfake_detect.data.datasets import SPLIT_NAME, ImageRecord, write_split_csv
from deepfake_detect.errors import DataError
from deepfake_detect.files import atomic_write_bytes, atomic_write_json, check_output_path
from deepfake_detect.models.checkpoint import load_tensors, save_tensors
from deepfake_detect.training.options import OPTIONS_NAME, TrainOptions, check_same_options

STATE_NAME = "state.json"
HISTORY_NAME = "history.csv"
# Timings are logged, not kept here: a resumed run's history must equal an uninterrupted one's.
HISTORY_FIELDS = (
    "epoch", "phase", "phase_epoch", "lr", "train_loss", "train_accuracy",
    "val_loss", "val_accuracy", "val_auc",
)  # fmt: skip


@dataclass
class RunState:
    """Where a run stands after its last complete epoch."""

    epoch: int = 0  # epochs completed, both phases together
    phase: str = "frozen"
    phase_epoch: int = 0  # epochs completed in the current phase
    bad_epochs: int = 0  # epochs without improvement on this phase's best (early stopping)
    phase_best: float | None = None
    best_value: float | None = None
    best_epoch: int = 0
    best_file: str = ""
    state_file: str = ""
    scheduler: dict[str, Any] = field(default_factory=dict)
    optimizer_groups: list[dict[str, Any]] = field(default_factory=list)
    average_updates: int = 0  # steps taken into the weight average (--ema) in this phase
    history: list[dict[str, Any]] = field(default_factory=list)
    timings: list[dict[str, Any]] = field(default_factory=list)  # seconds per epoch and cache
    done: bool = False


def read_state(run_dir: Path) -> RunState | None:
    path = run_dir / STATE_NAME
    if not path.exists():
        return None
    try:
        return RunState(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: unreadable run state ({exc})") from None


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    state = optimizer.state_dict()["state"]
    return {
        f"optimizer.{pid}.{name}": value for pid, s in state.items() for name, value in s.items()
    }


def restore_optimizer(optimizer, groups: list[dict[str, Any]], tensors: dict[str, torch.Tensor]):
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_epoch(
    run_dir: Path,
    state: RunState,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    improved: bool,
    write: bool = True,
    average: dict[str, torch.Tensor] | None = None,
) -> None:
    """Persist one finished epoch: tensors first, then history, then the state that names them.
    With `write` False (ranks other than 0 under torchrun), only the state advances, to name
    the files that rank 0 writes. With a weight average (`--ema`: the model's state with the
    averaged tensors in place), the epoch's tensors hold it too, and the best weights are it."""
    old = {state.state_file, state.best_file}
    state.state_file = f"state-{state.epoch:04d}.safetensors"
    if improved:
        state.best_file = f"best-{state.epoch:04d}.safetensors"
    state.scheduler = scheduler.state_dict()
    state.optimizer_groups = optimizer.state_dict()["param_groups"]
    if not write:
        return
    weights = {f"model.{k}": v for k, v in model.state_dict().items()}
    # copies: the average shares the model's integer buffers, safetensors refuses shared memory
    averaged = {f"average.{k}": v.clone() for k, v in (average or {}).items()}
    save_tensors(
        run_dir / state.state_file, {**weights, **averaged, **optimizer_tensors(optimizer)}
    )
    if improved:
        save_tensors(run_dir / state.best_file, average or model.state_dict())
    write_history(run_dir, state.history)
    atomic_write_json(run_dir / STATE_NAME, asdict(state))
    for name in old - {state.state_file, state.best_file, ""}:
        (run_dir / name).unlink(missing_ok=True)


def load_epoch_tensors(run_dir: Path, state: RunState) -> dict[str, torch.Tensor]:
    return load_tensors(run_dir / state.state_file)


def load_best_weights(run_dir: Path, state: RunState) -> dict[str, torch.Tensor]:
    return load_tensors(run_dir / state.best_file)


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_bytes(run_dir / HISTORY_NAME, buffer.getvalue().encode())


def remove_stale_files(run_dir: Path, state: RunState | None) -> None:
    """Delete tensors and temporary files that no committed state names (left by a kill)."""
    keep = {state.state_file, state.best_file} if state else set()
    for path in [*run_dir.glob("state-*.safetensors"), *run_dir.glob("best-*.safetensors")]:
        if path.name not in keep:
            path.unlink()
    for path in run_dir.glob(".*.tmp"):
        path.unlink()


def open_run(options: TrainOptions, main: bool = True) -> RunState:
    """The state to start from: a fresh one for a new run (whose folder must be empty or absent),
    the last committed epoch's for --resume (whose options must match the run's). The main
    process (rank 0 under torchrun; the only one otherwise) also probes that the folder is
    writable and removes what a killed run left; the other ranks only look."""
    run_dir = options.output
    if main:
        check_output_path(run_dir, folder=True)
    state = read_state(run_dir)
    used = run_dir.is_dir() and any(run_dir.iterdir())
    if options.resume and not (run_dir / OPTIONS_NAME).is_file():
        raise DataError(f"{run_dir}: nothing to resume (no training run there)")
    if not options.resume and (used or run_dir.is_file()):
        raise DataError(f"{run_dir}: folder is not empty; pass --resume or choose another")
    if state is not None and state.done:
        raise DataError(f"{run_dir}: this run already finished")
    if options.resume:
        check_same_options(run_dir / OPTIONS_NAME, options)
        if main:
            remove_stale_files(run_dir, state)
    return state or RunState()


def start_run_folder(options: TrainOptions, made: list[ImageRecord] | None) -> None:
    """The split (when made by this run), then the options that mark the folder as a run; a
    new run that fails here takes away what it made, so the same command can simply be run
    again."""
    run_dir, new_folder = options.output, not options.output.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        if made is not None:
            write_split_csv(made, run_dir / SPLIT_NAME)
        atomic_write_json(run_dir / OPTIONS_NAME, options.to_json())
    except BaseException:
        if not options.resume:
            for name in (SPLIT_NAME, OPTIONS_NAME):
                (run_dir / name).unlink(missing_ok=True)
            if new_folder:
                run_dir.rmdir()
        raise


def finish_run(run_dir: Path, state: RunState, leftovers: tuple[str, ...]) -> None:
    """Mark the run done first, then delete what only resuming needed (a kill in between
    leaves files that the next look at the folder removes, never a broken state)."""
    leftovers = (state.state_file, state.best_file, *leftovers)
    state.done, state.state_file, state.best_file = True, "", ""
    atomic_write_json(run_dir / STATE_NAME, asdict(state))
    for name in leftovers:
        (run_dir / name).unlink(missing_ok=True)
