"""`deepfake-detect`: a thin command line over the library.

Each command parses its options, calls one library function and formats the result. Known errors
become one line on stderr (exit 2); set DEEPFAKE_DETECT_DEBUG=1 for the traceback.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from deepfake_detect import __version__
from deepfake_detect.errors import DataError, DetectorError

app = typer.Typer(
    name="deepfake-detect",
    help="Tell real face photographs from GAN-generated ones (score = P(fake)).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
PREDICTION_FORMATS = (".csv", ".json", ".jsonl")
LICENCE_NOTE = (
    "code: Apache-2.0; bundled model: trained on FFHQ photos (CC BY-NC-SA 4.0) and StyleGAN "
    "faces (NVIDIA non-commercial licences), for research and non-commercial use only"
)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"deepfake-detect {__version__} ({LICENCE_NOTE})")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr
    )


DataOption = Annotated[
    list[Path],
    typer.Option(
        "--data",
        help="Dataset folder (Kaggle 140k root, real/ + fake/, or sources of them); repeatable.",
    ),
]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
ModelOption = Annotated[
    Path | None,
    typer.Option("--model", help="Run folder of a trained model. Default: the bundled model."),
]


@app.command()
def train(
    data: DataOption,
    output: Annotated[Path, typer.Option("--output", help="Run folder to create (or resume).")],
    backbone: Annotated[str, typer.Option(help="timm model name.")] = "legacy_xception",
    head: Annotated[str, typer.Option(help="paper (512-128-64 dense) or linear.")] = "paper",
    stem_stride: Annotated[
        int | None,
        typer.Option(help="1: keep full resolution in the first layer (about 4x the compute)."),
    ] = None,
    drop_path: Annotated[
        float,
        typer.Option(help="Stochastic depth rate of the backbone while fine-tuning, e.g. 0.2."),
    ] = 0.0,
    pretrained: Annotated[bool, typer.Option(help="Start from ImageNet weights.")] = True,
    pretrained_file: Annotated[Path | None, typer.Option(help="ImageNet weights file.")] = None,
    image_size: Annotated[
        int | None, typer.Option(help="Input size. Default: the backbone's.")
    ] = None,
    train_size: Annotated[
        int | None, typer.Option(help="Sample N balanced training images.")
    ] = None,
    balance_sources: Annotated[
        bool,
        typer.Option(help="Give every source folder and class an equal share of each epoch."),
    ] = False,
    augment: Annotated[
        str, typer.Option(help="paper (rotate 10°, shift 10%), flip (mirror only) or none.")
    ] = "paper",
    train_crop: Annotated[
        int | None,
        typer.Option(help="Train on random N x N windows of the input (no resampling)."),
    ] = None,
    reencode: Annotated[
        str | None,
        typer.Option(help="Re-encode every training image, e.g. jpeg:60-95 (removes format cues)."),
    ] = None,
    resize_jitter: Annotated[
        str | None, typer.Option(help="Shrink training images by a random factor, e.g. 0.7-1.0.")
    ] = None,
    run_audit: Annotated[
        bool, typer.Option("--audit/--no-audit", help="Audit the dataset for shortcuts first.")
    ] = True,
    frozen_epochs: Annotated[int, typer.Option(help="Epochs training the head only.")] = 5,
    finetune_epochs: Annotated[int, typer.Option(help="Epochs fine-tuning the backbone.")] = 5,
    batch_size: Annotated[int, typer.Option()] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate of the frozen phase.")] = 1e-3,
    finetune_lr: Annotated[float, typer.Option(help="Learning rate of fine-tuning.")] = 1e-4,
    weight_decay: Annotated[float, typer.Option()] = 1e-2,
    patience: Annotated[int, typer.Option(help="Early stopping: epochs without improvement.")] = 3,
    select_by: Annotated[
        str, typer.Option(help="Best checkpoint by validation loss or auc.")
    ] = "loss",
    feature_cache: Annotated[
        bool, typer.Option(help="Frozen phase on cached backbone features (fast).")
    ] = True,
    cache_copies: Annotated[
        int, typer.Option(help="Augmented copies per image in the cache (0: unaugmented).")
    ] = 0,
    workers: Annotated[int, typer.Option(help="Image decoding processes.")] = 2,
    valid_fraction: Annotated[
        float, typer.Option(help="Share of each class and source for validation (own split).")
    ] = 0.1,
    test_fraction: Annotated[
        float, typer.Option(help="Share of each class and source held out for testing.")
    ] = 0.2,
    seed: Annotated[
        int,
        typer.Option(
            help="Seed of the split (unless --split-seed), the head's initial weights, the "
            "sampling, the augmentation and each validation image's JPEG quality."
        ),
    ] = 0,
    split_seed: Annotated[
        int | None,
        typer.Option(
            help="Seed of the split alone (default: --seed; ignored when the data brings its "
            "own split): other seeds, same split."
        ),
    ] = None,
    split_manifest: Annotated[
        Path | None,
        typer.Option(
            help="A model's split_manifest.csv: the images it names keep their split (matched "
            "by content), the rest are split around them."
        ),
    ] = None,
    device: DeviceOption = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --output.")] = False,
) -> None:
    """Train a detector: the head on a frozen backbone, then fine-tuning."""
    from deepfake_detect.training import TrainOptions
    from deepfake_detect.training import train as run_training

    options = TrainOptions(
        data=data, output=output, backbone=backbone, head=head, stem_stride=stem_stride,
        drop_path=drop_path, pretrained=pretrained,
        pretrained_file=pretrained_file, image_size=image_size, train_size=train_size,
        balance_sources=balance_sources,
        augment=augment, train_crop=train_crop, reencode=reencode, resize_jitter=resize_jitter,
        audit=run_audit,
        frozen_epochs=frozen_epochs, finetune_epochs=finetune_epochs,
        batch_size=batch_size, lr=lr, finetune_lr=finetune_lr, weight_decay=weight_decay,
        patience=patience, select_by=select_by, seed=seed, split_seed=split_seed,
        split_manifest=split_manifest,
        device=device,
        feature_cache=feature_cache, cache_copies=cache_copies, workers=workers, resume=resume,
        valid_fraction=valid_fraction, test_fraction=test_fraction,
        progress=sys.stderr.isatty(),
    )  # fmt: skip
    result = run_training(options)
    metrics = result.config.metrics
    typer.echo(
        f"model written to {result.run_dir}: validation accuracy {metrics['accuracy']:.4f}, "
        f"ROC-AUC {_fmt(metrics['roc_auc'])}, threshold {result.config.threshold:.4f}"
    )


@app.command()
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
) -> None:
    """Combine trained runs into one model: mean of their logits, threshold chosen on validation.

    The members must share their split, preprocessing and re-encoding (train them with the same
    --data, split seed, fractions, --audit, --reencode, backbone family and --image-size).
    """
    from deepfake_detect.ensemble import build_ensemble

    config = build_ensemble(
        models, output, half=half, combine=combine, batch_size=batch_size, workers=workers,
        device=device,
        progress=sys.stderr.isatty(),
    )  # fmt: skip
    m = config.metrics
    typer.echo(
        f"{'ensemble' if config.members else 'weight average'} of {len(models)} in {output}: "
        f"validation accuracy {m['accuracy']:.4f}, "
        f"ROC-AUC {_fmt(m['roc_auc'])}, threshold {config.threshold:.4f}"
    )


@app.command()
def audit(
    data: DataOption,
    output: Annotated[
        Path | None, typer.Option("--output", help="Write the report as JSON.")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit with status 1 when a shortcut is found.")
    ] = False,
    images: Annotated[bool, typer.Option(help="Include every image's facts in the JSON.")] = False,
    workers: Annotated[int, typer.Option(help="Reading threads.")] = 2,
) -> None:
    """Audit a dataset: formats, sizes, JPEG quality, duplicates, and shortcuts."""
    from deepfake_detect.audit import cached_audit
    from deepfake_detect.checkpoint import atomic_write_json, check_output_path
    from deepfake_detect.datasets import index_dataset

    if output is not None and output.suffix.lower() != ".json":
        raise ValueError(f"--output must end in .json, not {output.name!r}")
    if output is not None:
        check_output_path(output)
    report = cached_audit(index_dataset(data), workers=workers, progress=sys.stderr.isatty())
    typer.echo(report.format_text())
    if len(report.unreadable) == len(report.facts):
        raise DataError(f"no image could be read ({len(report.facts)} unreadable, listed above)")
    if output is not None:
        atomic_write_json(output, report.to_dict(include_images=images))
    if strict and report.shortcuts:
        raise typer.Exit(1)


@app.command()
def evaluate(
    data: DataOption,
    output: Annotated[Path, typer.Option("--output", help="Folder for metrics and figures.")],
    model: ModelOption = None,
    split: Annotated[str, typer.Option(help="test, valid, train or all.")] = "test",
    threshold: Annotated[float | None, typer.Option(help="Default: the model's.")] = None,
    jpeg_quality: Annotated[
        int | None, typer.Option(help="Re-encode both classes as JPEG at this quality first.")
    ] = None,
    batch_size: Annotated[int, typer.Option()] = 32,
    device: DeviceOption = "auto",
) -> None:
    """Evaluate a model on one split: metrics.json, report, confusion matrix, ROC.

    Images that the model's recorded split does not know (never trained on) count as test.
    """
    from deepfake_detect.evaluation import check_report_folder, evaluation_records
    from deepfake_detect.evaluation import evaluate as run_evaluation
    from deepfake_detect.inference import load_detector
    from deepfake_detect.metrics import format_summary_table

    if split not in ("train", "valid", "test", "all"):
        raise ValueError(f"--split must be test, valid, train or all, not {split!r}")
    check_report_folder(output)
    detector = load_detector(model, device=device)
    records = evaluation_records(data, split, detector.model_dir)
    metrics = run_evaluation(
        detector, records, output, threshold=threshold, batch_size=batch_size,
        jpeg_quality=jpeg_quality,
    )  # fmt: skip
    typer.echo(format_summary_table(metrics))
    if len(metrics["per_source"]) > 1:
        for source, m in metrics["per_source"].items():
            typer.echo(
                f"  {source}: {m['n_images']} images, accuracy {m['accuracy']:.4f}, "
                f"ROC-AUC {_fmt(m['roc_auc'])}"
            )
    typer.echo(f"written to {output}")


@app.command()
def predict(
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders (recursive).")],
    model: ModelOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="FILE.csv, FILE.json or FILE.jsonl.")
    ] = None,
    threshold: Annotated[float | None, typer.Option(help="Default: the model's.")] = None,
    batch_size: Annotated[int, typer.Option()] = 32,
    device: DeviceOption = "auto",
) -> None:
    """Score images: P(fake) and a real/fake label for each."""
    from deepfake_detect.checkpoint import check_output_path
    from deepfake_detect.inference import expand_paths, load_detector

    if output is not None and output.suffix.lower() not in PREDICTION_FORMATS:
        raise ValueError(
            f"--output must end in {', '.join(PREDICTION_FORMATS)}, not {output.name!r}"
        )
    if output is not None:
        check_output_path(output)
    files = expand_paths(paths)
    detector = load_detector(model, device=device)
    predictions = detector.score(files, batch_size=batch_size, threshold=threshold)
    records = [p.to_dict() for p in predictions]
    if output is None:
        typer.echo(format_prediction_table(records))
    else:
        write_predictions(output, records, detector.info())
    failed = sum(r["error"] is not None for r in records)
    fakes = sum(r["label"] == "fake" for r in records)
    reals = len(records) - fakes - failed
    noun = "image" if len(records) == 1 else "images"
    typer.echo(f"{len(records)} {noun}: {fakes} fake, {reals} real, {failed} failed", err=True)
    if failed:
        raise typer.Exit(1)


def format_prediction_table(records: list[dict]) -> str:
    width = max([len("path"), *(len(r["path"]) for r in records)])
    lines = [f"{'path':<{width}}  {'score':>6}  {'label':<5}  error"]
    for r in records:
        score = "" if r["score"] is None else f"{r['score']:.4f}"
        lines.append(f"{r['path']:<{width}}  {score:>6}  {r['label'] or '':<5}  {r['error'] or ''}")
    return "\n".join(lines)


def write_predictions(path: Path, records: list[dict], info: dict) -> None:
    """CSV (path,score,label,error), JSON or JSON Lines with the model's identity; atomic."""
    from deepfake_detect.checkpoint import atomic_write_bytes

    suffix = path.suffix.lower()
    if suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=["path", "score", "label", "error"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(records)
        text = buffer.getvalue()
    elif suffix == ".json":
        text = (
            json.dumps({**info, "predictions": [{**r, **info} for r in records]}, indent=2) + "\n"
        )
    else:
        text = "".join(json.dumps({**r, **info}) + "\n" for r in records)
    atomic_write_bytes(path, text.encode(errors="surrogateescape"))  # any file name


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _is_usage_error(exc: Exception) -> bool:
    """A missing, unknown or malformed option. Typer 0.12-0.2x raise click's exceptions; later
    versions raise those of their own copy of click, which derive from typer.TyperException."""
    import click

    kinds = (click.ClickException, getattr(typer, "TyperException", click.ClickException))
    return isinstance(exc, kinds) and hasattr(exc, "format_message")


def main() -> None:
    """Entry point: one-line errors for the user's mistakes, tracebacks only when debugging."""
    try:
        code = app(standalone_mode=False)  # returns typer.Exit's code instead of raising it
    except (DetectorError, ValueError, OSError) as exc:
        if os.environ.get("DEEPFAKE_DETECT_DEBUG"):
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, OSError) and exc.filename:
            message = f"{exc.filename}: {exc.strerror}"
        typer.echo(f"error: {message}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if not _is_usage_error(exc):
            raise
        typer.echo(f"error: {exc.format_message()} (see deepfake-detect --help)", err=True)
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
