"""The options of a training run: checked on creation, stored in the run folder (options.json)
and, without any path of the machine, in the model's config.json."""

from __future__ import annotations

import json
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from deepfake_detect.data.prepare import DataSpec
from deepfake_detect.data.transforms import AUGMENTATIONS, reencode_steps
from deepfake_detect.devices import check_device_name
from deepfake_detect.errors import DataError
from deepfake_detect.evaluation.metrics import THRESHOLD_RULES
from deepfake_detect.inference.faces import CropPolicy
from deepfake_detect.models.config import ModelConfig
from deepfake_detect.models.networks import HEADS, default_preprocessing

OPTIONS_NAME = "options.json"
# Options that may differ when resuming: they change neither the data nor the arithmetic.
RESUMABLE_CHANGES = frozenset(
    {
        "resume",
        "progress",
        "workers",
        "device",
        "data",
        "fake_only",
        "output",
        "calibrate",
        "threshold_rule",
    }
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
    init_from: Path | None = None
    image_size: int | None = None
    train_size: int | None = None
    source_train_size: list[str] = field(default_factory=list)
    exclude_sources: list[str] = field(default_factory=list)  # leave-one-source-out (`compare`)
    reframe: list[str] = field(default_factory=list)  # sources cropped around their faces
    balance_sources: bool = False
    augment: str = "paper"
    train_crop: int | None = None
    reencode: str | None = None
    resize_jitter: str | None = None
    figure_history: float = 0.0
    grid_shift: float = 0.0
    audit: bool = True
    frozen_epochs: int = 5
    finetune_epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    finetune_lr: float = 1e-4
    weight_decay: float = 1e-2
    ema: float = 0.0  # decay of the weight average while fine-tuning; 0: none
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
    threshold_rule: str = THRESHOLD_RULES[0]
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
            (self.threshold_rule in THRESHOLD_RULES,
             f"--threshold-rule must be one of {', '.join(THRESHOLD_RULES)}"),
            (self.seed >= 0, "--seed must be >= 0"),
            (self.split_seed is None or self.split_seed >= 0, "--split-seed must be >= 0"),
            (self.pretrained_file is None or Path(self.pretrained_file).is_file(),
             f"--pretrained-file {self.pretrained_file}: no such file"),
            (self.init_from is None or (Path(self.init_from) / "config.json").is_file(),
             f"--init-from {self.init_from}: not a model folder (no config.json)"),
            (self.split_manifest is None or Path(self.split_manifest).is_file(),
             f"--split-manifest {self.split_manifest}: no such file"),
            (self.frozen_epochs >= 0 and self.finetune_epochs >= 0, "epochs must be >= 0"),
            (self.frozen_epochs + self.finetune_epochs > 0, "train for at least one epoch"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.lr > 0 and self.finetune_lr > 0, "learning rates must be positive"),
            (self.weight_decay >= 0, "--weight-decay must be >= 0"),
            (0 <= self.ema < 1, "--ema must lie in [0, 1): 0 for none, e.g. 0.999"),
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
        self.source_train_size = list(self.source_train_size)
        self.exclude_sources = list(self.exclude_sources)
        self.reframe = list(self.reframe or [])
        parse_source_sizes(self.source_train_size)  # raises on a malformed SOURCE=N
        # raises on a malformed spec
        reencode_steps(self.reencode, self.resize_jitter, self.figure_history, self.grid_shift)
        for option, folders in (("--data", self.data), ("--fake-only", self.fake_only)):
            for folder in folders:
                if not folder.is_dir():
                    raise ValueError(f"{option} {folder}: no such folder")
        check_device_name(self.device)

    def data_spec(self) -> DataSpec:
        """What the data layer needs to hand this run its records."""
        return DataSpec(
            data=self.data,
            fake_only=self.fake_only,
            split_manifest=self.split_manifest,
            audit=self.audit,
            advise_reencode=self.reencode is None,
            valid_fraction=self.valid_fraction,
            test_fraction=self.test_fraction,
            split_seed=self.seed if self.split_seed is None else self.split_seed,
            train_size=self.train_size,
            source_train_sizes=parse_source_sizes(self.source_train_size),
            exclude_sources=tuple(self.exclude_sources),
            sample_seed=self.seed,
            progress=self.progress,
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["data"] = [str(d) for d in self.data]
        data["fake_only"] = [str(d) for d in self.fake_only]
        data["output"] = str(self.output)
        data["pretrained_file"] = str(self.pretrained_file) if self.pretrained_file else None
        data["init_from"] = str(self.init_from) if self.init_from else None
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
        for key in ("pretrained_file", "init_from", "split_manifest"):
            data[key] = Path(data[key]).name if data[key] else None
        return data


def parse_source_sizes(given: list[str]) -> tuple[tuple[str, int], ...]:
    """--source-train-size SOURCE=N, repeatable: ((source, n), ...), each source once."""
    sizes: dict[str, int] = {}
    for text in given:
        source, sep, count = text.partition("=")
        if not sep or not source or not count.strip().isdigit():
            raise ValueError(f"--source-train-size must be SOURCE=N (N >= 0), not {text!r}")
        if source in sizes:
            raise ValueError(f"--source-train-size: {source} given twice")
        sizes[source] = int(count)
    return tuple(sizes.items())


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
        face_crop=CropPolicy().to_dict(),
        **pre,
    )
