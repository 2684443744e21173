"""Two-phase training: the head on a frozen backbone (from cached features), then fine-tuning.

Every epoch's randomness (shuffling, dropout, augmentation) is derived from (seed, epoch), and the
state after each epoch is committed to the run folder, so a killed run resumed with `resume=True`
ends, on the CPU, with the same weights and history as an uninterrupted one.

The trainer only trains, checkpoints and resumes: its records come from the data layer
(`prepare_dataset`), its threshold and temperature from the evaluation layer
(`calibrate_on_validation`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import RandomSampler

from deepfake_detect.data.datasets import SPLIT_NAME
from deepfake_detect.data.loaders import ImageDataset, make_loader
from deepfake_detect.data.prepare import prepare_dataset
from deepfake_detect.data.transforms import (
    TrainTransform,
    build_train_transform,
    reencode_steps,
    validation_transform,
)
from deepfake_detect.devices import channels_last
from deepfake_detect.distributed import (
    ShardSampler,
    all_max,
    all_sum,
    barrier,
    check_same,
    gather_by_index,
    start_world,
)
from deepfake_detect.errors import DetectorError
from deepfake_detect.evaluation.plots import plot_training_curves
from deepfake_detect.evaluation.scoring import (
    calibration_from_logits,
    predict_logits,
    validation_metrics,
)
from deepfake_detect.models.checkpoint import load_model_weights, save_model
from deepfake_detect.models.config import ModelConfig, read_config
from deepfake_detect.models.networks import DetectorNet, build_model
from deepfake_detect.training.features import CACHE_NAME, FeaturePass, cached_features
from deepfake_detect.training.loop import (
    Repeats,
    StratifiedSampler,
    WeightAverage,
    class_balanced_weights,
    seed_epoch,
    train_epoch,
)
from deepfake_detect.training.options import TrainOptions, model_config
from deepfake_detect.training.reframe import REFRAME_NAME, reframe, write_boxes
from deepfake_detect.training.run_state import (
    finish_run,
    load_best_weights,
    load_epoch_tensors,
    open_run,
    restore_optimizer,
    save_epoch,
    start_run_folder,
    write_history,
)

log = logging.getLogger("deepfake_detect")
CURVES_NAME = "curves.png"


@dataclass
class TrainResult:
    run_dir: Path
    config: ModelConfig
    history: list[dict[str, Any]]


class Trainer:
    """Runs the two phases over a run folder; one instance per `train` call."""

    def __init__(self, options: TrainOptions) -> None:
        self.options = options
        self.run_dir = options.output
        self.world, self.device = start_world(options.device)
        if not self.world.main:  # rank 0 speaks for the run
            options.progress = False
            log.setLevel(logging.ERROR)
        self.state = open_run(options, main=self.world.main)
        # Everything that can fail on bad input runs before the run folder is created,
        # the cheap checks (model, weights) before the slow ones (every image decoded).
        self.config = model_config(options)
        self.model = self._build_model()
        self.average: WeightAverage | None = None  # --ema, while fine-tuning
        self.source_steps = reencode_steps(
            options.reencode, options.resize_jitter, options.figure_history, options.grid_shift
        )
        self.valid_transform = validation_transform(self.config, self.source_steps)
        self.splits = prepare_dataset(options.data_spec(), self.run_dir / SPLIT_NAME)
        boxes = self._reframe() if options.reframe else None
        # every rank has looked at the folder (open_run) before rank 0 writes into it
        check_same(self.world, "the data and options", self._fingerprint())
        if self.world.main:
            start_run_folder(options, self.splits.made)
            if boxes is not None:
                write_boxes(boxes, self.run_dir / REFRAME_NAME)
        barrier(self.world)

    def _reframe(self) -> dict:
        """`--reframe`: the named sources' training and validation images cropped around their
        faces (`training.reframe`); the boxes, for the run folder."""
        from deepfake_detect.inference.faces import CropPolicy

        s, policy = self.splits, CropPolicy.from_dict(self.config.face_crop)
        records, boxes = reframe([*s.train, *s.valid], self.options.reframe, policy,
                                 self.run_dir / REFRAME_NAME)  # fmt: skip
        s.train, s.valid = records[: len(s.train)], records[len(s.train) :]
        return boxes

    def _fingerprint(self) -> str:
        """What every rank must agree on: the options and each split's images and labels."""
        o = self.options.to_record()  # no paths: nodes may mount the data elsewhere
        for key in ("device", "progress", "workers"):  # may differ between machines
            o.pop(key, None)
        records = [
            (name, r.source, r.path.parent.name, r.path.name, r.label)
            for name, split in (("train", self.splits.train), ("valid", self.splits.valid))
            for r in split
        ]
        return repr((sorted(o.items(), key=str), records))

    def _build_model(self) -> DetectorNet:
        o = self.options
        fresh = self.state.epoch == 0
        torch.manual_seed(o.seed)  # the head's initial weights
        start = o.init_from if fresh else None  # a resumed run has its own weights
        model = build_model(
            o.backbone,
            o.head,
            pretrained=o.pretrained and fresh and start is None,
            pretrained_file=o.pretrained_file if fresh and start is None else None,
            stem_stride=o.stem_stride,
            drop_path=o.drop_path,
        )
        if start is not None:
            model.load_state_dict(initial_weights(start, self.config))
        return channels_last(model).to(self.device)

    def run(self) -> TrainResult:
        o = self.options
        self._run_phase("frozen", o.frozen_epochs, o.lr)
        if o.finetune_epochs:
            self._run_phase("finetune", o.finetune_epochs, o.finetune_lr)
        return self._finish()

    # -- phases -------------------------------------------------------------------------------

    def _run_phase(self, phase: str, epochs: int, lr: float) -> None:
        state = self.state
        if epochs == 0 or (phase == "frozen" and state.phase == "finetune"):
            return
        if state.phase != phase:  # entering fine-tuning: start from the best frozen-phase weights
            if state.best_file:
                self.model.load_state_dict(load_best_weights(self.run_dir, state))
            state.phase, state.phase_epoch, state.bad_epochs, state.phase_best = phase, 0, 0, None
            state.average_updates = 0
        module, params = self._trainable(phase)
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=self.options.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        self.average = None
        if phase == "finetune" and self.options.ema:  # from the phase's first weights
            self.average = WeightAverage(self.model, self.options.ema, state.average_updates)
        if state.phase_epoch > 0:
            self._restore(optimizer, scheduler)
        data = self._phase_data(phase)
        step = self._parallel(module)
        while state.phase_epoch < epochs and state.bad_epochs < self.options.patience:
            self._one_epoch(phase, epochs, module, step, optimizer, scheduler, data)
        if state.bad_epochs >= self.options.patience:
            log.info("%s: stopped early after %d epochs", phase, state.phase_epoch)

    def _trainable(self, phase: str) -> tuple[nn.Module, list[nn.Parameter]]:
        frozen = phase == "frozen"
        for p in self.model.backbone.parameters():
            p.requires_grad_(not frozen)
        if frozen and self.options.feature_cache:
            return self.model.head, list(self.model.head.parameters())
        return self.model, [p for p in self.model.parameters() if p.requires_grad]

    def _parallel(self, module: nn.Module) -> nn.Module:
        """The module that takes the optimisation steps: under torchrun, wrapped in
        DistributedDataParallel, which averages the gradients of all ranks in each step (only
        parameters that train in this phase take part)."""
        if not self.world.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def _restore(self, optimizer, scheduler) -> None:
        tensors = load_epoch_tensors(self.run_dir, self.state)
        weights = {
            k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")
        }
        self.model.load_state_dict(weights)
        if self.average is not None:
            prefix = "average."
            self.average.load({k.removeprefix(prefix): v for k, v in tensors.items()
                               if k.startswith(prefix)})  # fmt: skip
        restore_optimizer(optimizer, self.state.optimizer_groups, tensors)
        scheduler.load_state_dict(self.state.scheduler)

    def _phase_data(self, phase: str) -> dict[str, Any]:
        o = self.options
        if phase == "frozen" and o.feature_cache:
            train, valid = self._cached_features()
            return {"train": train, "valid": valid, "batch_size": max(o.batch_size, 64)}
        transform = build_train_transform(self.config, o.augment, self.source_steps, o.train_crop)
        return {
            "train": ImageDataset(self.splits.train, transform, seed=o.seed),
            "valid": ImageDataset(self.splits.valid, self.valid_transform, seed=o.seed),
            "batch_size": o.batch_size,
        }

    # -- one epoch ----------------------------------------------------------------------------

    def _one_epoch(self, phase, epochs, module, step, optimizer, scheduler, data) -> None:
        o, epoch = self.options, self.state.epoch + 1
        generator = seed_epoch(o.seed, epoch, self.world.rank)
        images = isinstance(data["train"], ImageDataset)
        if images:
            data["train"].epoch = epoch
        workers = o.workers if images else 0
        sampler, train = self._sampler(data["train"], generator), data["train"]
        if sampler is not None and not images:
            train = Repeats(train)
        if self.world.distributed:  # this rank's share of the same global order
            sampler = ShardSampler(self.world, sampler or RandomSampler(train, generator=generator))
        train_loader = make_loader(train, data["batch_size"], workers, generator, sampler)
        self._set_mode(phase, module)
        lr = optimizer.param_groups[0]["lr"]
        desc = f"{phase} {self.state.phase_epoch + 1}/{epochs}"
        average = None if self.average is None else partial(self.average.update, self.model)
        row = train_epoch(step, train_loader, optimizer, self.device, desc, o.progress, average)
        scheduler.step()
        row = self._whole_world_row(row)
        with self._averaged():  # what the epoch is judged and kept by
            valid = self._predict(module, data["valid"], data["batch_size"], workers, "valid")
        row |= validation_metrics(*valid)
        self._record_epoch(phase, lr, row, optimizer, scheduler)

    def _averaged(self) -> contextlib.AbstractContextManager:
        """The model holds the weight average inside the block, where there is one (--ema)."""
        if self.average is None:
            return contextlib.nullcontext()
        return self.average.applied(self.model)

    def _sampler(self, train, generator: torch.Generator) -> StratifiedSampler | None:
        """With --balance-sources, each class half of every epoch, shared equally among the
        sources that hold it: an equal share for each (source, class) where all hold both."""
        if not self.options.balance_sources:
            return None
        keys = [(r.source, r.label) for r in self.splits.train]
        # the feature cache may hold several copies of each image, one after the other
        keys = [keys[i % len(keys)] for i in range(len(train))]
        return StratifiedSampler(keys, generator, class_balanced_weights(keys))

    def _whole_world_row(self, row: dict[str, float]) -> dict[str, float]:
        """An epoch's training figures over every rank's images, as one process would log them."""
        seen = row.pop("images")
        if not self.world.distributed:
            return row
        loss, correct, total = all_sum(
            self.world, self.device, row["train_loss"] * seen, row["train_accuracy"] * seen, seen
        )
        seconds = all_max(self.world, self.device, row["seconds"])
        return {
            "train_loss": loss / total,
            "train_accuracy": correct / total,
            "seconds": seconds,
            "images_per_second": total / max(seconds, 1e-9),
        }

    def measure_validation(self, seed: int | None = None) -> dict[str, float]:
        """An epoch's validation pass on the weights the model holds now: loss, accuracy and
        ROC-AUC. `seed` draws each image's re-encoding (default: the run's `--seed`, which is
        what its epochs were measured on)."""
        return validation_metrics(*self.validation_logits(seed))

    def validation_logits(self, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and labels of the validation images, on the weights the model holds now, each
        image re-encoded as `seed` draws (default: the run's)."""
        o = self.options
        valid = ImageDataset(
            self.splits.valid, self.valid_transform, seed=o.seed if seed is None else seed
        )
        return self._predict(self.model, valid, o.batch_size, o.workers, "valid")

    def _predict(self, module, dataset, batch_size: int, workers: int, desc: str):
        """Logits and labels of every item of `dataset`, in order; under torchrun each rank
        scores its share and the shares are gathered, the sampler's padding dropped by index,
        so the whole split's metrics equal a single process's."""
        o = self.options
        if not self.world.distributed:
            loader = make_loader(dataset, batch_size, workers)
            return predict_logits(module, loader, self.device, desc, o.progress)
        sampler = ShardSampler(self.world, len(dataset), pad=False)  # each item once
        loader = make_loader(dataset, batch_size, workers, sampler=sampler)
        logits, labels = predict_logits(module, loader, self.device, desc, o.progress)
        total = len(dataset)
        return (
            gather_by_index(self.world, logits, sampler.indices, total),
            gather_by_index(self.world, labels, sampler.indices, total),
        )

    def _record_epoch(self, phase: str, lr: float, row: dict, optimizer, scheduler) -> None:
        """Best epoch, early stopping and the epoch's row; then commit it to the run folder."""
        state, o = self.state, self.options
        epoch = state.epoch + 1
        value = row["val_loss"] if o.select_by == "loss" else -(row["val_auc"] or 0.0)
        improved = state.best_value is None or value < state.best_value
        if improved:
            state.best_value, state.best_epoch = value, epoch
        if state.phase_best is None or value < state.phase_best:
            state.phase_best, state.bad_epochs = value, 0
        else:
            state.bad_epochs += 1
        state.epoch, state.phase_epoch = epoch, state.phase_epoch + 1
        if not all(math.isfinite(row[k]) for k in ("train_loss", "val_loss")):
            raise DetectorError(f"training diverged in epoch {epoch} (loss not finite): lower --lr")
        timing = {k: row.pop(k) for k in ("seconds", "images_per_second")}
        state.timings.append({"epoch": epoch, "phase": phase, **timing})
        state.history.append(
            {"epoch": epoch, "phase": phase, "phase_epoch": state.phase_epoch, "lr": lr, **row}
        )
        average = None
        if self.average is not None:
            state.average_updates = self.average.updates
            average = self.average.state_dict(self.model)
        main = self.world.main
        save_epoch(self.run_dir, state, self.model, optimizer, scheduler, improved, main, average)
        barrier(self.world)  # no rank runs ahead of the last committed epoch
        log.info(format_epoch(state.history[-1] | timing, best=improved))

    def _set_mode(self, phase: str, module: nn.Module) -> None:
        """Dropout on; BatchNorm statistics stay frozen in both phases.

        Fine-tuning with batch statistics of small CPU batches would shift every feature that the
        head learnt in the frozen phase (Keras' transfer-learning guide gives the same advice).
        A frozen backbone runs wholly in inference mode (no stochastic depth), as the feature
        cache computes it.
        """
        module.train()
        if phase == "frozen":
            self.model.backbone.eval()
        for layer in self.model.backbone.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.eval()

    # -- feature cache --------------------------------------------------------------------------

    def _cached_features(self):
        """Pooled backbone features of the training and validation images, computed once."""
        o = self.options
        plain = TrainTransform(self.config, (), self.source_steps)  # re-encoded, not augmented
        augmented = build_train_transform(self.config, o.augment, self.source_steps, o.train_crop)
        train = self.splits.train
        passes = [FeaturePass("train", train, plain, 1_000_000)] if o.cache_copies == 0 else [
            FeaturePass("train", train, augmented, 1_000_000 + copy)
            for copy in range(o.cache_copies)
        ]  # fmt: skip
        passes.append(FeaturePass("valid", self.splits.valid, self.valid_transform, 0))

        def predict(dataset, desc):  # each image once, on one rank
            return self._predict(self.model.backbone, dataset, o.batch_size, o.workers, desc)

        train_set, valid_set, seconds = cached_features(
            self.run_dir / CACHE_NAME, passes, predict, seed=o.seed, write=self.world.main
        )
        if seconds is not None:
            self.state.timings.append({"epoch": 0, "phase": "feature-cache", "seconds": seconds})
        return train_set, valid_set

    # -- end of the run -----------------------------------------------------------------------

    def _finish(self) -> TrainResult:
        """Best weights, a validation-chosen threshold, config.json, curves; then tidy up."""
        o, state = self.options, self.state
        self.model.load_state_dict(load_best_weights(self.run_dir, state))
        self.config.temperature, self.config.threshold, self.config.metrics = (
            calibration_from_logits(
                *self.validation_logits(), calibrate=o.calibrate, threshold_rule=o.threshold_rule
            )
        )
        self.config.metrics["best_epoch"] = state.best_epoch
        self.config.metrics["selected_by"] = f"validation {o.select_by}"
        if self.world.main:
            cpu_state = {k: v.cpu() for k, v in self.model.state_dict().items()}
            save_model(self.run_dir, cpu_state, self.config)
            write_history(self.run_dir, state.history)
            plot_training_curves(state.history, self.run_dir / CURVES_NAME)
            finish_run(self.run_dir, state, (CACHE_NAME,))
        barrier(self.world)
        return TrainResult(self.run_dir, self.config, state.history)


def format_epoch(row: dict[str, Any], best: bool) -> str:
    auc = "n/a" if row["val_auc"] is None else f"{row['val_auc']:.4f}"
    return (
        f"epoch {row['epoch']} ({row['phase']} {row['phase_epoch']}): "
        f"train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f} | "
        f"val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.4f} auc {auc} | "
        f"train {row['seconds']:.1f} s, {row['images_per_second']:.0f} img/s"
        f"{' *best' if best else ''}"
    )


def initial_weights(model_dir: Path, config: ModelConfig) -> dict[str, torch.Tensor]:
    """The weights of a trained model to start from (`--init-from`): one network whose backbone,
    head, stem and input size are this run's, so that it goes on learning what it learnt."""
    start = read_config(model_dir)
    if start.members:
        raise DetectorError(f"--init-from {model_dir}: an ensemble, not one network")
    for field in ("backbone", "head", "stem_stride", "image_size"):
        theirs, ours = getattr(start, field), getattr(config, field)
        if theirs != ours:
            raise DetectorError(
                f"--init-from {model_dir}: its {field} is {theirs}, this run's {ours}"
            )
    return load_model_weights(model_dir, start)


def train(options: TrainOptions) -> TrainResult:
    """Train a detector as the options say and write it, with its history, to options.output."""
    return Trainer(options).run()
