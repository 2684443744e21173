"""Two-phase training: the head on a frozen backbone (from cached features), then fine-tuning.

Every epoch's randomness (shuffling, dropout, augmentation) is derived from (seed, epoch), and the
state after each epoch is committed to the run folder, so a killed run resumed with `resume=True`
ends, on the CPU, with the same weights and history as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset
from tqdm.auto import tqdm

from deepfake_detect.checkpoint import (
    ModelConfig,
    atomic_write_json,
    check_output_path,
    load_tensors,
    save_model,
    save_tensors,
)
from deepfake_detect.datasets import (
    SPLIT_NAME,
    ImageRecord,
    index_dataset,
    index_labelled_folder,
    make_split,
    read_split_csv,
    sample_balanced,
    select,
    write_split_csv,
)
from deepfake_detect.devices import autocast, check_device_name, resolve_device, to_device
from deepfake_detect.errors import DataError, DetectorError
from deepfake_detect.images import load_image
from deepfake_detect.manifest import apply_manifest_splits, read_manifest
from deepfake_detect.metrics import (
    choose_threshold,
    compute_metrics,
    expected_calibration_error,
    fit_temperature,
)
from deepfake_detect.models import HEADS, DetectorNet, build_model, default_preprocessing
from deepfake_detect.plots import plot_training_curves
from deepfake_detect.run_state import (
    STATE_NAME,
    RunState,
    load_best_weights,
    load_epoch_tensors,
    read_state,
    remove_stale_files,
    restore_optimizer,
    save_epoch,
    write_history,
)
from deepfake_detect.transforms import (
    AUGMENTATIONS,
    EvalTransform,
    RandomJPEG,
    TrainTransform,
    build_train_transform,
    reencode_steps,
    sample_rng,
)

log = logging.getLogger("deepfake_detect")
CACHE_NAME = "feature-cache.safetensors"
CURVES_NAME = "curves.png"
OPTIONS_NAME = "options.json"
# Options that may differ when resuming: they change neither the data nor the arithmetic.
RESUMABLE_CHANGES = frozenset(
    {"resume", "progress", "workers", "device", "data", "fake_only", "output", "calibrate"}
)
SELECT_BY = ("loss", "auc")


@dataclass
class TrainOptions:
    """Everything `train` needs; checked on creation so bad options fail before any work."""

    data: list[Path]
    output: Path
    fake_only: list[Path] = field(default_factory=list)
    backbone: str = "legacy_xception"
    head: str = "paper"
    stem_stride: int | None = None
    drop_path: float = 0.0
    pretrained: bool = True
    pretrained_file: Path | None = None
    image_size: int | None = None
    train_size: int | None = None
    balance_sources: bool = False
    augment: str = "paper"
    train_crop: int | None = None
    reencode: str | None = None
    resize_jitter: str | None = None
    figure_history: float = 0.0
    audit: bool = True
    frozen_epochs: int = 5
    finetune_epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    finetune_lr: float = 1e-4
    weight_decay: float = 1e-2
    patience: int = 3
    select_by: str = "loss"
    seed: int = 0
    split_seed: int | None = None
    split_manifest: Path | None = None
    device: str = "auto"
    feature_cache: bool = True
    cache_copies: int = 0
    workers: int = 0
    valid_fraction: float = 0.1
    test_fraction: float = 0.2
    calibrate: bool = True
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        self.data = [Path(d) for d in self.data]
        self.fake_only = [Path(d) for d in self.fake_only]
        self.output = Path(self.output)
        checks = [
            (bool(self.data), "give at least one --data folder"),
            (self.augment in AUGMENTATIONS, f"--augment must be one of {', '.join(AUGMENTATIONS)}"),
            (self.select_by in SELECT_BY, f"--select-by must be one of {', '.join(SELECT_BY)}"),
            (self.head in HEADS, f"--head must be one of {', '.join(HEADS)}"),
            (self.seed >= 0, "--seed must be >= 0"),
            (self.split_seed is None or self.split_seed >= 0, "--split-seed must be >= 0"),
            (self.pretrained_file is None or Path(self.pretrained_file).is_file(),
             f"--pretrained-file {self.pretrained_file}: no such file"),
            (self.split_manifest is None or Path(self.split_manifest).is_file(),
             f"--split-manifest {self.split_manifest}: no such file"),
            (self.frozen_epochs >= 0 and self.finetune_epochs >= 0, "epochs must be >= 0"),
            (self.frozen_epochs + self.finetune_epochs > 0, "train for at least one epoch"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.lr > 0 and self.finetune_lr > 0, "learning rates must be positive"),
            (self.weight_decay >= 0, "--weight-decay must be >= 0"),
            (self.patience >= 1, "--patience must be at least 1"),
            (self.cache_copies >= 0, "--cache-copies must be >= 0"),
            (self.valid_fraction > 0 and self.test_fraction >= 0
             and self.valid_fraction + self.test_fraction < 1,
             "--valid-fraction must be > 0, --test-fraction >= 0, and together below 1"),
            (self.workers >= 0, "--workers must be >= 0"),
            (self.image_size is None or self.image_size >= 32, "--image-size must be >= 32"),
            (self.train_crop is None or self.train_crop >= 32, "--train-crop must be >= 32"),
            (self.stem_stride in (None, 1, 2), "--stem-stride must be 1 or 2"),
            (0 <= self.drop_path < 1, "--drop-path must lie in [0, 1)"),
            (self.train_crop is None or self.image_size is None
             or self.train_crop <= self.image_size, "--train-crop must not exceed --image-size"),
            (self.train_size is None or self.train_size >= 2, "--train-size must be at least 2"),
            (not (self.pretrained_file and not self.pretrained), "--pretrained-file and "
             "--no-pretrained contradict each other"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        # raises on a malformed spec
        reencode_steps(self.reencode, self.resize_jitter, self.figure_history)
        for option, folders in (("--data", self.data), ("--fake-only", self.fake_only)):
            for folder in folders:
                if not folder.is_dir():
                    raise ValueError(f"{option} {folder}: no such folder")
        check_device_name(self.device)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["data"] = [str(d) for d in self.data]
        data["fake_only"] = [str(d) for d in self.fake_only]
        data["output"] = str(self.output)
        data["pretrained_file"] = str(self.pretrained_file) if self.pretrained_file else None
        data["split_manifest"] = str(self.split_manifest) if self.split_manifest else None
        return data


    def to_record(self) -> dict[str, Any]:
        """The options as config.json records them: no path of the machine that trained it (a
        shipped model travels). Data folders given as relative paths stay as given, absolute
        ones keep their name; the run folder is the config's name; files keep their name."""
        data = self.to_json()
        for key in ("data", "fake_only"):
            data[key] = [d if not Path(d).is_absolute() else Path(d).name for d in data[key]]
        data["output"] = None
        for key in ("pretrained_file", "split_manifest"):
            data[key] = Path(data[key]).name if data[key] else None
        return data


@dataclass
class TrainResult:
    run_dir: Path
    config: ModelConfig
    history: list[dict[str, Any]]


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
        array = self.transform(load_image(record.path), rng)
        return torch.from_numpy(array), float(record.label)


def seed_epoch(seed: int, epoch: int) -> torch.Generator:
    """Seed torch (dropout) for this epoch and return the shuffling generator."""
    torch.manual_seed(seed * 100_003 + epoch)
    return torch.Generator().manual_seed(seed * 100_019 + epoch)


class StratifiedSampler(Sampler[int]):
    """An epoch of len(keys) indices with an equal share for every stratum (key).

    Each stratum is drawn without replacement, pass after pass, so a small stratum is seen more
    than once an epoch and a large one less than once; the order comes from `generator`. The k-th
    pass yields index + k * len(keys), so that a dataset can give a repeat its own augmentation
    (`ImageDataset` does; see `Repeats` for one that cannot).
    """

    def __init__(self, keys: Sequence[Hashable], generator: torch.Generator) -> None:
        strata: dict[Hashable, list[int]] = {}
        for index, key in enumerate(keys):
            strata.setdefault(key, []).append(index)
        self.strata = [torch.tensor(strata[key]) for key in sorted(strata)]
        self.total = len(keys)
        self.generator = generator

    def __len__(self) -> int:
        return self.total

    def __iter__(self) -> Iterator[int]:
        g, count = self.generator, len(self.strata)
        picks = []
        for number, members in enumerate(self.strata):
            share = self.total // count + (number < self.total % count)
            passes = -(-share // len(members))
            order = [
                members[torch.randperm(len(members), generator=g)] + k * self.total
                for k in range(passes)
            ]
            picks.append(torch.cat(order)[:share])
        epoch = torch.cat(picks)
        return iter(epoch[torch.randperm(len(epoch), generator=g)].tolist())


class Repeats(Dataset):
    """A dataset that a StratifiedSampler may index past its end: a repeat is the same item
    (cached features have no augmentation to vary)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index % len(self.dataset)]


def make_loader(dataset, batch_size, workers=0, generator=None, sampler=None) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=generator is not None and sampler is None,
        generator=generator,
        sampler=sampler,
        num_workers=workers,
    )


def progress_bar(total: int, desc: str, enabled: bool):
    return tqdm(
        total=total, desc=desc, unit="img", unit_scale=True, leave=False, disable=not enabled
    )


def train_epoch(module, loader, optimizer, device, desc="train", progress=True) -> dict[str, float]:
    """One pass over the loader; returns mean loss, accuracy at 0.5 and throughput."""
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    total_loss, correct, seen, start = 0.0, 0, 0, time.perf_counter()
    with progress_bar(len(loader.dataset), desc, progress) as bar:
        for x, y in loader:
            x, y = to_device(x, device), y.to(device, dtype=torch.float32)
            with autocast(device):
                logits = module(x).reshape(-1).float()
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            (loss / len(y)).backward()
            optimizer.step()
            total_loss += loss.item()
            correct += ((logits >= 0) == (y >= 0.5)).sum().item()
            seen += len(y)
            bar.update(len(y))
            bar.set_postfix(loss=f"{total_loss / seen:.4f}")
    seconds = time.perf_counter() - start
    return {
        "train_loss": total_loss / seen,
        "train_accuracy": correct / seen,
        "seconds": seconds,
        "images_per_second": seen / max(seconds, 1e-9),
    }


@torch.no_grad()
def predict_logits(module, loader, device, desc="predict", progress=True):
    """Logits and labels for every item of the loader, in order."""
    module.eval()
    logits, labels = [], []
    with progress_bar(len(loader.dataset), desc, progress) as bar:
        for x, y in loader:
            with autocast(device):
                logits.append(module(to_device(x, device)).reshape(-1).float().cpu())
            labels.append(y.float())
            bar.update(len(y))
    return torch.cat(logits), torch.cat(labels)


def validation_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float | None]:
    from sklearn.metrics import roc_auc_score

    loss = nn.functional.binary_cross_entropy_with_logits(logits, labels).item()
    accuracy = ((logits >= 0) == (labels >= 0.5)).float().mean().item()
    two_classes = labels.min() != labels.max()
    auc = float(roc_auc_score(labels.numpy(), logits.numpy())) if two_classes else None
    return {"val_loss": loss, "val_accuracy": accuracy, "val_auc": auc}


def validation_transform(config: ModelConfig, source_steps: Sequence) -> TrainTransform:
    """Validation images are re-encoded like the training images (at a fixed quality per
    image), so that neither the best epoch nor the threshold is chosen by file format."""
    jpeg = tuple(s for s in source_steps if isinstance(s, RandomJPEG))
    return TrainTransform(config, (), jpeg) if jpeg else EvalTransform(config)


def calibrate_on_validation(
    module, records, transform, *, seed, batch_size, workers, device, progress, calibrate=True
) -> tuple[float, float, dict[str, Any]]:
    """Score the validation images; fit the temperature that makes their P(fake) calibrated
    (1.0 when `calibrate` is False), then choose the threshold of maximum balanced accuracy on
    the calibrated scores. Returns (temperature, threshold, metrics with bootstrap intervals).

    Only validation images decide either number: the test split never reaches this function.
    """
    dataset = ImageDataset(records, transform, seed=seed)
    loader = make_loader(dataset, batch_size, workers)
    logits, labels = predict_logits(module, loader, device, "valid", progress)
    labels_np = labels.numpy().astype(int)
    temperature = fit_temperature(labels_np, logits.numpy()) if calibrate else 1.0
    scores = torch.sigmoid(logits.double() / temperature).numpy()  # as Detector scores them
    threshold = choose_threshold(labels_np, scores)
    metrics = compute_metrics(labels_np, scores, threshold, n_bootstrap=200)
    if calibrate:
        raw = torch.sigmoid(logits.double()).numpy()
        metrics["ece_before_calibration"] = expected_calibration_error(labels_np, raw)
    return temperature, threshold, metrics


def prepare_records(options: TrainOptions, split_file: Path) -> dict[str, list[ImageRecord]]:
    """Index the data, reuse or make the split, sample the training set.

    With a split manifest, the images it names keep its split (a shipped model's held-out images
    stay held out) and the others are split around them.

    A split made here is returned under "made" for the caller to record in split.csv.
    """
    made = None
    if split_file.exists():
        records = read_split_csv(split_file)
    else:
        records = index_dataset(options.data)
        records += fake_only_records(options.fake_only, {r.source for r in records})
        if options.split_manifest is not None:
            records = apply_manifest_splits(records, read_manifest(options.split_manifest))
        if options.audit:
            records = audit_and_group(records, options.reencode is None, options.progress)
        if any(r.split is None for r in records):
            records = made = make_split(
                records,
                valid_fraction=options.valid_fraction,
                test_fraction=options.test_fraction,
                seed=options.seed if options.split_seed is None else options.split_seed,
            )
    train, valid = select(records, "train"), select(records, "valid")
    for name, part in (("train", train), ("valid", valid)):
        if {r.label for r in part} != {0, 1}:
            raise DataError(f"the {name} split needs both real and fake images")
    if options.train_size is not None:
        train = sample_balanced(train, options.train_size, seed=options.seed)
    return {"train": train, "valid": valid, "made": made}


def fake_only_records(folders: Sequence[Path], taken: set[str]) -> list[ImageRecord]:
    """The images of --fake-only folders, each folder a source of fakes only; its name must
    not be that of another source (their counts and splits would mix)."""
    records: list[ImageRecord] = []
    for folder in folders:
        found = index_labelled_folder(folder, 1)
        source = found[0].source
        if source in taken:
            raise DataError(f"--fake-only {folder}: a source named {source!r} exists already")
        taken.add(source)
        records += found
    return records


def audit_and_group(records: list[ImageRecord], advise: bool, progress: bool) -> list[ImageRecord]:
    """Warn loudly about shortcuts; keep near-duplicates in one group (so on one side of the
    split). The audit's facts are cached per dataset, so this is cheap after the first run."""
    from deepfake_detect.audit import apply_groups, cached_audit

    report = cached_audit(records, progress=progress)
    for shortcut in report.shortcuts:
        log.warning(
            "WARNING SHORTCUT: %s alone predicts the class in %s (balanced accuracy %.2f): %s%s",
            shortcut.attribute, shortcut.scope, shortcut.balanced_accuracy, shortcut.detail,
            "; consider --reencode jpeg:60-95" if advise else "",
        )  # fmt: skip
    clusters = report.duplicate_clusters
    if clusters:
        log.info("%d near-duplicate clusters kept on one side of the split", len(clusters))
    return apply_groups(records, report)


def check_images(records: Sequence[ImageRecord], progress: bool) -> None:
    """Decode every image once up front, so a bad file stops the run before hours of work."""
    failures = []
    for record in tqdm(records, desc="checking images", unit="img", disable=not progress):
        try:
            load_image(record.path)
        except Exception as exc:  # noqa: BLE001 - every failure is reported together below
            failures.append(str(exc))
    if failures:
        raise DataError(
            f"{len(failures)} of {len(records)} images cannot be read, first: {failures[0]}"
        )


def check_same_options(path: Path, options: TrainOptions) -> None:
    """A resumed run must continue with the options it started with."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from None
    current = options.to_json()
    # An option added after the run started counts as given with its default value.
    defaults = {
        f.name: f.default if f.default_factory is MISSING else f.default_factory()
        for f in fields(TrainOptions)
    }
    stored = {key: stored.get(key, default) for key, default in defaults.items()}
    for values in (stored, current):  # no split seed means the seed's: the same split
        if values["split_seed"] is None:
            values["split_seed"] = values["seed"]
    changed = [
        f"{key} {stored[key]!r} -> {value!r}"
        for key, value in current.items()
        if key not in RESUMABLE_CHANGES and stored[key] != value
    ]
    if changed:
        raise DataError("--resume with other options than the run's: " + "; ".join(changed))


def model_config(options: TrainOptions) -> ModelConfig:
    pre = default_preprocessing(options.backbone)
    if options.image_size is not None:
        pre["image_size"] = options.image_size
    if options.train_crop is not None and options.train_crop > pre["image_size"]:
        raise ValueError(
            f"--train-crop {options.train_crop} exceeds the input size {pre['image_size']}"
        )
    return ModelConfig(
        backbone=options.backbone,
        head=options.head,
        stem_stride=options.stem_stride,
        name=options.output.resolve().name,
        version=time.strftime("%Y.%m.%d", time.gmtime()),
        training=options.to_record(),
        **pre,
    )


class Trainer:
    """Runs the two phases over a run folder; one instance per `train` call."""

    def __init__(self, options: TrainOptions) -> None:
        self.options = options
        self.run_dir = options.output
        self.device = resolve_device(options.device)
        self.state = self._open_run()
        # Everything that can fail on bad input runs before the run folder is created,
        # the cheap checks (model, weights) before the slow ones (every image decoded).
        self.config = model_config(options)
        self.model = self._build_model()
        self.source_steps = reencode_steps(
            options.reencode, options.resize_jitter, options.figure_history
        )
        self.valid_transform = self._valid_transform()
        self.records = prepare_records(options, self.run_dir / SPLIT_NAME)
        check_images([*self.records["train"], *self.records["valid"]], options.progress)
        self._start_run_folder()

    def _start_run_folder(self) -> None:
        """The split, then the options that mark the folder as a run; a new run that fails
        here takes away what it made, so the same command can simply be run again."""
        o, new_folder = self.options, not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.records["made"] is not None:
                write_split_csv(self.records["made"], self.run_dir / SPLIT_NAME)
            atomic_write_json(self.run_dir / OPTIONS_NAME, o.to_json())
        except BaseException:
            if not o.resume:
                for name in (SPLIT_NAME, OPTIONS_NAME):
                    (self.run_dir / name).unlink(missing_ok=True)
                if new_folder:
                    self.run_dir.rmdir()
            raise

    def _valid_transform(self):
        return validation_transform(self.config, self.source_steps)

    def _open_run(self) -> RunState:
        run_dir, options = self.run_dir, self.options
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
            remove_stale_files(run_dir, state)
        return state or RunState()

    def _build_model(self) -> DetectorNet:
        o = self.options
        fresh = self.state.epoch == 0
        torch.manual_seed(o.seed)  # the head's initial weights
        model = build_model(
            o.backbone,
            o.head,
            pretrained=o.pretrained and fresh,
            pretrained_file=o.pretrained_file if fresh else None,
            stem_stride=o.stem_stride,
            drop_path=o.drop_path,
        )
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        return model.to(self.device)

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
        module, params = self._trainable(phase)
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=self.options.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        if state.phase_epoch > 0:
            self._restore(optimizer, scheduler)
        data = self._phase_data(phase)
        while state.phase_epoch < epochs and state.bad_epochs < self.options.patience:
            self._one_epoch(phase, epochs, module, optimizer, scheduler, data)
        if state.bad_epochs >= self.options.patience:
            log.info("%s: stopped early after %d epochs", phase, state.phase_epoch)

    def _trainable(self, phase: str) -> tuple[nn.Module, list[nn.Parameter]]:
        frozen = phase == "frozen"
        for p in self.model.backbone.parameters():
            p.requires_grad_(not frozen)
        if frozen and self.options.feature_cache:
            return self.model.head, list(self.model.head.parameters())
        return self.model, [p for p in self.model.parameters() if p.requires_grad]

    def _restore(self, optimizer, scheduler) -> None:
        tensors = load_epoch_tensors(self.run_dir, self.state)
        weights = {
            k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")
        }
        self.model.load_state_dict(weights)
        restore_optimizer(optimizer, self.state.optimizer_groups, tensors)
        scheduler.load_state_dict(self.state.scheduler)

    def _phase_data(self, phase: str) -> dict[str, Any]:
        o = self.options
        if phase == "frozen" and o.feature_cache:
            train, valid = self._cached_features()
            return {"train": train, "valid": valid, "batch_size": max(o.batch_size, 64)}
        transform = build_train_transform(self.config, o.augment, self.source_steps, o.train_crop)
        return {
            "train": ImageDataset(self.records["train"], transform, seed=o.seed),
            "valid": ImageDataset(self.records["valid"], self.valid_transform, seed=o.seed),
            "batch_size": o.batch_size,
        }

    def _one_epoch(self, phase, epochs, module, optimizer, scheduler, data) -> None:
        state, o = self.state, self.options
        epoch = state.epoch + 1
        generator = seed_epoch(o.seed, epoch)
        if isinstance(data["train"], ImageDataset):
            data["train"].epoch = epoch
        workers = o.workers if isinstance(data["train"], ImageDataset) else 0
        sampler = None
        if o.balance_sources:
            keys = [(r.source, r.label) for r in self.records["train"]]
            # the feature cache may hold several copies of each image, one after the other
            sampler = StratifiedSampler(
                [keys[i % len(keys)] for i in range(len(data["train"]))], generator
            )
        train = data["train"] if sampler is None or isinstance(data["train"], ImageDataset) else (
            Repeats(data["train"])
        )  # fmt: skip
        train_loader = make_loader(train, data["batch_size"], workers, generator, sampler)
        valid_loader = make_loader(data["valid"], data["batch_size"], workers)
        self._set_mode(phase, module)
        lr = optimizer.param_groups[0]["lr"]
        desc = f"{phase} {state.phase_epoch + 1}/{epochs}"
        row = train_epoch(module, train_loader, optimizer, self.device, desc, o.progress)
        scheduler.step()
        row |= validation_metrics(
            *predict_logits(module, valid_loader, self.device, "valid", o.progress)
        )
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
        save_epoch(self.run_dir, state, self.model, optimizer, scheduler, improved)
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

    def _cached_features(self) -> tuple[TensorDataset, TensorDataset]:
        """Pooled backbone features of the training and validation images, computed once."""
        path = self.run_dir / CACHE_NAME
        if path.exists():
            t = load_tensors(path)
        else:
            start = time.perf_counter()
            t = self._extract_cache()
            save_tensors(path, t)
            seconds = time.perf_counter() - start
            self.state.timings.append({"epoch": 0, "phase": "feature-cache", "seconds": seconds})
            log.info("feature cache built in %.1f s", seconds)
        return (
            TensorDataset(t["train_features"], t["train_labels"]),
            TensorDataset(t["valid_features"], t["valid_labels"]),
        )

    def _extract_cache(self) -> dict[str, torch.Tensor]:
        o = self.options
        plain = TrainTransform(self.config, (), self.source_steps)  # re-encoded, not augmented
        augmented = build_train_transform(self.config, o.augment, self.source_steps, o.train_crop)
        passes = [("train", plain, 1_000_000)] if o.cache_copies == 0 else [
            ("train", augmented, 1_000_000 + copy) for copy in range(o.cache_copies)
        ]  # fmt: skip
        passes.append(("valid", self.valid_transform, 0))
        out: dict[str, list[torch.Tensor]] = {}
        self.model.backbone.eval()
        for split, transform, epoch in passes:
            dataset = ImageDataset(self.records[split], transform, seed=o.seed)
            dataset.epoch = epoch
            loader = make_loader(dataset, o.batch_size, o.workers)
            feats, labels = predict_logits(
                self.model.backbone, loader, self.device, f"features {split}", o.progress
            )
            out.setdefault(f"{split}_features", []).append(feats.reshape(len(dataset), -1))
            out.setdefault(f"{split}_labels", []).append(labels)
        return {k: torch.cat(v) for k, v in out.items()}

    # -- end of the run -----------------------------------------------------------------------

    def _finish(self) -> TrainResult:
        """Best weights, a validation-chosen threshold, config.json, curves; then tidy up."""
        o, state = self.options, self.state
        self.model.load_state_dict(load_best_weights(self.run_dir, state))
        self.config.temperature, self.config.threshold, self.config.metrics = (
            calibrate_on_validation(
                self.model, self.records["valid"], self.valid_transform, seed=o.seed,
                batch_size=o.batch_size, workers=o.workers, device=self.device,
                progress=o.progress, calibrate=o.calibrate,
            )
        )  # fmt: skip
        self.config.metrics["best_epoch"] = state.best_epoch
        self.config.metrics["selected_by"] = f"validation {o.select_by}"
        cpu_state = {k: v.cpu() for k, v in self.model.state_dict().items()}
        save_model(self.run_dir, cpu_state, self.config)
        write_history(self.run_dir, state.history)
        plot_training_curves(state.history, self.run_dir / CURVES_NAME)
        self._tidy()
        return TrainResult(self.run_dir, self.config, state.history)

    def _tidy(self) -> None:
        """Mark the run done first, then delete what only resuming needed (a kill in between
        leaves files that the next look at the folder removes, never a broken state)."""
        state = self.state
        leftovers = (state.state_file, state.best_file, CACHE_NAME)
        state.done, state.state_file, state.best_file = True, "", ""
        atomic_write_json(self.run_dir / STATE_NAME, asdict(state))
        for name in leftovers:
            (self.run_dir / name).unlink(missing_ok=True)


def format_epoch(row: dict[str, Any], best: bool) -> str:
    auc = "n/a" if row["val_auc"] is None else f"{row['val_auc']:.4f}"
    return (
        f"epoch {row['epoch']} ({row['phase']} {row['phase_epoch']}): "
        f"train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f} | "
        f"val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.4f} auc {auc} | "
        f"train {row['seconds']:.1f} s, {row['images_per_second']:.0f} img/s"
        f"{' *best' if best else ''}"
    )


def train(options: TrainOptions) -> TrainResult:
    """Train a detector as the options say and write it, with its history, to options.output."""
    return Trainer(options).run()
