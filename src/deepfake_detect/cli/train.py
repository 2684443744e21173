"""`train` and `ensemble`: making models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepfake_detect.cli.common import (
    DataOption,
    DeviceOption,
    MaxPixelsOption,
    QuietOption,
    ThresholdRuleOption,
    fmt,
    join_world,
    say,
    setup,
    show_progress,
)

OutputOption = Annotated[Path, typer.Option("--output", help="Run folder to create (or resume).")]

BackboneOption = Annotated[str, typer.Option(help="timm model name.")]

HeadOption = Annotated[str, typer.Option(help="paper (512-128-64 dense) or linear.")]

StemStrideOption = Annotated[
        int | None,
        typer.Option(help="1: keep full resolution in the first layer (about 4x the compute)."),
    ]

DropPathOption = Annotated[
        float,
        typer.Option(help="Stochastic depth rate of the backbone while fine-tuning, e.g. 0.2."),
    ]

PretrainedOption = Annotated[bool, typer.Option(help="Start from ImageNet weights.")]

PretrainedFileOption = Annotated[Path | None, typer.Option(help="ImageNet weights file.")]

InitFromOption = Annotated[
    Path | None,
    typer.Option(
        metavar="MODEL",
        help="Start from a trained model's weights (its folder; same backbone, head and input "
        "size) rather than ImageNet's, and train on: e.g. --frozen-epochs 0 with a new "
        "fine-tuning schedule.",
    ),
]

ImageSizeOption = Annotated[
        int | None, typer.Option(help="Input size. Default: the backbone's.")
    ]

TrainSizeOption = Annotated[
        int | None, typer.Option(help="Sample N balanced training images.")
    ]

BalanceSourcesOption = Annotated[
        bool,
        typer.Option(help="Give every source folder and class an equal share of each epoch."),
    ]

AugmentOption = Annotated[
        str,
        typer.Option(
            help="paper (rotate 10°, shift 10%), flip (mirror only), crop (mirror, and half "
            "of the images cropped to 50-100% of their area), rescale (mirror, and half of the "
            "images resized down to 0.4-1 and back up), robust (what a shared photo goes "
            "through: mirror, rotation, crop, resize, blur, JPEG 30-95) or none."
        ),
    ]

TrainCropOption = Annotated[
        int | None,
        typer.Option(help="Train on random N x N windows of the input (no resampling)."),
    ]

ReencodeOption = Annotated[
        str | None,
        typer.Option(help="Re-encode every training image, e.g. jpeg:60-95 (removes format cues)."),
    ]

ResizeJitterOption = Annotated[
        str | None, typer.Option(help="Shrink training images by a random factor, e.g. 0.7-1.0.")
    ]

FigureHistoryOption = Annotated[
        float,
        typer.Option(
            metavar="P",
            help="Put a share P of the training images, either class, through the processing "
            "history of ../shared/fake-only (resize, JPEG, resize, JPEG).",
        ),
    ]

GridShiftOption = Annotated[
        float,
        typer.Option(
            metavar="P",
            help="Save a share P of the --reencode re-encodes as if cut out of a larger photo: "
            "their 8x8 JPEG blocks 0-7 px off the image's own grid each way, not both 0, no "
            "pixel resampled.",
        ),
    ]

FakeOnlyOption = Annotated[
        list[Path] | None,
        typer.Option(
            "--fake-only", metavar="DIR",
            help="A folder of fakes only (e.g. diffusion faces), split like the others; "
            "repeatable. Pair it with --figure-history when its files have a history of their own.",
        ),
    ]

RunAuditOption = Annotated[
        bool, typer.Option("--audit/--no-audit", help="Audit the dataset for shortcuts first.")
    ]

FrozenEpochsOption = Annotated[int, typer.Option(help="Epochs training the head only.")]

FinetuneEpochsOption = Annotated[int, typer.Option(help="Epochs fine-tuning the backbone.")]

BatchSizeOption = Annotated[int, typer.Option()]

LrOption = Annotated[float, typer.Option(help="Learning rate of the frozen phase.")]

FinetuneLrOption = Annotated[float, typer.Option(help="Learning rate of fine-tuning.")]

WeightDecayOption = Annotated[float, typer.Option()]

EmaOption = Annotated[
        float,
        typer.Option(help="Average the weights while fine-tuning: an exponential moving average "
                          "with this decay per step, e.g. 0.999 (0: off). Validation, the best "
                          "checkpoint and the model are the average."),
    ]  # fmt: skip

PatienceOption = Annotated[int, typer.Option(help="Early stopping: epochs without improvement.")]

SelectByOption = Annotated[
        str, typer.Option(help="Best checkpoint by validation loss or auc.")
    ]

FeatureCacheOption = Annotated[
        bool, typer.Option(help="Frozen phase on cached backbone features (fast).")
    ]

CacheCopiesOption = Annotated[
        int, typer.Option(help="Augmented copies per image in the cache (0: unaugmented).")
    ]

WorkersOption = Annotated[int, typer.Option(help="Image decoding processes.")]

ValidFractionOption = Annotated[
        float, typer.Option(help="Share of each class and source for validation (own split).")
    ]

TestFractionOption = Annotated[
        float, typer.Option(help="Share of each class and source held out for testing.")
    ]

SeedOption = Annotated[
        int,
        typer.Option(
            help="Seed of the split (unless --split-seed), the head's initial weights, the "
            "sampling, the augmentation and each validation image's JPEG quality."
        ),
    ]

SplitSeedOption = Annotated[
        int | None,
        typer.Option(
            help="Seed of the split alone (default: --seed; ignored when the data brings its "
            "own split): other seeds, same split."
        ),
    ]

SplitManifestOption = Annotated[
        Path | None,
        typer.Option(
            help="A model's split_manifest.csv: the images it names keep their split (matched "
            "by content), the rest are split around them."
        ),
    ]

CalibrateOption = Annotated[
        bool,
        typer.Option(help="Fit a temperature on validation so that scores are probabilities."),
    ]

ResumeOption = Annotated[bool, typer.Option("--resume", help="Continue the run in --output.")]

SourceTrainSizeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--source-train-size", metavar="SOURCE=N",
        help="Train on N images of that source (half of each class; its validation images "
        "stay): a learning curve. Repeatable.",
    ),
]

ReframeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--reframe", metavar="SOURCE",
        help="Crop each training and validation image of SOURCE around its largest face, as "
        "--faces crops faces for scoring: for a source framed unlike the others (a framing "
        "only one class has is a shortcut). Repeatable.",
    ),
]


def train(
    data: DataOption,
    output: OutputOption,
    backbone: BackboneOption = "legacy_xception",
    head: HeadOption = "paper",
    stem_stride: StemStrideOption = None,
    drop_path: DropPathOption = 0.0,
    pretrained: PretrainedOption = True,
    pretrained_file: PretrainedFileOption = None,
    init_from: InitFromOption = None,
    image_size: ImageSizeOption = None,
    train_size: TrainSizeOption = None,
    source_train_size: SourceTrainSizeOption = None,
    reframe: ReframeOption = None,
    balance_sources: BalanceSourcesOption = False,
    augment: AugmentOption = "paper",
    train_crop: TrainCropOption = None,
    reencode: ReencodeOption = None,
    resize_jitter: ResizeJitterOption = None,
    figure_history: FigureHistoryOption = 0.0,
    grid_shift: GridShiftOption = 0.0,
    fake_only: FakeOnlyOption = None,
    run_audit: RunAuditOption = True,
    frozen_epochs: FrozenEpochsOption = 5,
    finetune_epochs: FinetuneEpochsOption = 5,
    batch_size: BatchSizeOption = 32,
    lr: LrOption = 1e-3,
    finetune_lr: FinetuneLrOption = 1e-4,
    weight_decay: WeightDecayOption = 1e-2,
    ema: EmaOption = 0.0,
    patience: PatienceOption = 3,
    select_by: SelectByOption = "loss",
    feature_cache: FeatureCacheOption = True,
    cache_copies: CacheCopiesOption = 0,
    workers: WorkersOption = 2,
    valid_fraction: ValidFractionOption = 0.1,
    test_fraction: TestFractionOption = 0.2,
    seed: SeedOption = 0,
    split_seed: SplitSeedOption = None,
    split_manifest: SplitManifestOption = None,
    calibrate: CalibrateOption = True,
    threshold_rule: ThresholdRuleOption = "recalibrated",
    device: DeviceOption = "auto",
    resume: ResumeOption = False,
    max_pixels: MaxPixelsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Train a detector: the head on a frozen backbone, then fine-tuning."""
    given = dict(locals())  # the options, as TrainOptions names them but for three
    setup(given.pop("quiet"), given.pop("max_pixels"))
    join_world(device)  # under torchrun: only rank 0 speaks
    given["audit"], given["fake_only"] = given.pop("run_audit"), given["fake_only"] or []
    given["source_train_size"] = given["source_train_size"] or []
    given["reframe"] = given["reframe"] or []
    from deepfake_detect.training import TrainOptions
    from deepfake_detect.training import train as run_training

    options = TrainOptions(**given, progress=show_progress())
    result = run_training(options)
    metrics = result.config.metrics
    say(
        f"model written to {result.run_dir}: validation accuracy {metrics['accuracy']:.4f}, "
        f"ROC-AUC {fmt(metrics['roc_auc'])}, threshold {result.config.threshold:.4f}, "
        f"temperature {result.config.temperature:.3f}"
    )


def ensemble(
    models: Annotated[
        list[Path], typer.Option("--model", help="Run folder of a member; two or more.")
    ],
    output: Annotated[Path, typer.Option("--output", help="Model folder to create.")],
    half: Annotated[
        bool, typer.Option("--half/--float32", help="Store the weights as float16 (half size).")
    ] = True,
    combine: Annotated[
        str,
        typer.Option(help="logits: mean of the members' outputs; weights: one averaged network."),
    ] = "logits",
    batch_size: Annotated[int, typer.Option()] = 32,
    workers: Annotated[int, typer.Option(help="Image decoding processes.")] = 2,
    device: DeviceOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """Combine trained runs into one model: mean of their logits, threshold chosen on validation.

    The members must share their split, preprocessing and re-encoding (train them with the same
    --data, split seed, fractions, --audit, --reencode, backbone family and --image-size).
    """
    from deepfake_detect.training.ensembling import build_ensemble

    setup(quiet)
    config = build_ensemble(
        models, output, half=half, combine=combine, batch_size=batch_size, workers=workers,
        device=device,
        progress=show_progress(),
    )  # fmt: skip
    m = config.metrics
    say(
        f"{'ensemble' if config.members else 'weight average'} of {len(models)} in {output}: "
        f"validation accuracy {m['accuracy']:.4f}, "
        f"ROC-AUC {fmt(m['roc_auc'])}, threshold {config.threshold:.4f}"
    )


