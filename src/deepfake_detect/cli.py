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
import warnings
from pathlib import Path
from typing import Annotated

import typer

from deepfake_detect import __version__
from deepfake_detect.errors import DataError, DetectorError

app = typer.Typer(
    name="deepfake-detect",
    help="Tell real face photographs from GAN-generated ones (score = P(fake)).",
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: Typer's rich panels print flags as if they took a value ("--strict
    # <bool>", Typer 0.2x), and plain text also reads well in a pipe or a log.
    rich_markup_mode=None,
)
PREDICTION_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl"}
STDOUT = "-"
_state = {"quiet": False}  # --quiet before the command; reset by every invocation
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
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Only errors and the requested output (any command)."),
    ] = False,
) -> None:
    from deepfake_detect.images import set_max_pixels

    _state["quiet"] = False
    set_max_pixels(None)
    _setup(quiet)


def _setup(quiet: bool, max_pixels: int | None = None) -> bool:
    """Per command: --quiet (given before or after the command) leaves only errors on stderr,
    and no progress bars; --max-pixels raises the image size limit. Returns the quiet flag."""
    quiet = _state["quiet"] = quiet or _state["quiet"]
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("deepfake_detect").setLevel(logging.ERROR if quiet else logging.INFO)
    if quiet:
        warnings.simplefilter("ignore")
    if max_pixels is not None:
        from deepfake_detect.images import set_max_pixels

        if max_pixels <= 0:
            raise ValueError(f"--max-pixels must be a positive number of pixels, got {max_pixels}")
        set_max_pixels(max_pixels)
    return quiet


def _progress() -> bool:
    """Progress bars go to stderr when it is a terminal, unless --quiet."""
    return sys.stderr.isatty() and not _state["quiet"]


def _say(message: str, err: bool = False) -> None:
    """A line for the user (results on stdout, summaries on stderr); silent under --quiet."""
    if not _state["quiet"]:
        typer.echo(message, err=err)


DataOption = Annotated[
    list[Path],
    typer.Option(
        "--data",
        metavar="DIR",
        help="Dataset folder (Kaggle 140k root, real/ + fake/, or sources of them); repeatable.",
    ),
]
DeviceOption = Annotated[str, typer.Option(metavar="NAME", help="auto, cpu or cuda.")]
ModelOption = Annotated[
    Path | None,
    typer.Option(
        "--model",
        metavar="DIR",
        help="Run folder of a trained model. Default: the bundled model.",
    ),
]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="Only errors and the requested output.")
]
MaxPixelsOption = Annotated[
    int | None,
    typer.Option(
        metavar="N",
        help="Largest image accepted, in pixels (default 40,000,000; phone photos reach "
        "200,000,000). Also DEEPFAKE_DETECT_MAX_PIXELS.",
    ),
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
        str,
        typer.Option(
            help="paper (rotate 10°, shift 10%), flip (mirror only), robust (what a shared "
            "photo goes through: mirror, rotation, crop, resize, blur, JPEG 30-95) or none."
        ),
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
    figure_history: Annotated[
        float,
        typer.Option(
            metavar="P",
            help="Put a share P of the training images, either class, through the processing "
            "history of ../shared/fake-only (resize, JPEG, resize, JPEG).",
        ),
    ] = 0.0,
    fake_only: Annotated[
        list[Path] | None,
        typer.Option(
            "--fake-only", metavar="DIR",
            help="A folder of fakes only (e.g. diffusion faces), split like the others; "
            "repeatable. Pair it with --figure-history when its files have a history of their own.",
        ),
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
    calibrate: Annotated[
        bool,
        typer.Option(help="Fit a temperature on validation so that scores are probabilities."),
    ] = True,
    device: DeviceOption = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --output.")] = False,
    max_pixels: MaxPixelsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Train a detector: the head on a frozen backbone, then fine-tuning."""
    quiet = _setup(quiet, max_pixels)
    from deepfake_detect.training import TrainOptions
    from deepfake_detect.training import train as run_training

    options = TrainOptions(
        data=data, output=output, backbone=backbone, head=head, stem_stride=stem_stride,
        drop_path=drop_path, pretrained=pretrained,
        pretrained_file=pretrained_file, image_size=image_size, train_size=train_size,
        balance_sources=balance_sources,
        augment=augment, train_crop=train_crop, reencode=reencode, resize_jitter=resize_jitter,
        figure_history=figure_history, fake_only=fake_only or [],
        audit=run_audit,
        frozen_epochs=frozen_epochs, finetune_epochs=finetune_epochs,
        batch_size=batch_size, lr=lr, finetune_lr=finetune_lr, weight_decay=weight_decay,
        patience=patience, select_by=select_by, seed=seed, split_seed=split_seed,
        split_manifest=split_manifest,
        device=device,
        feature_cache=feature_cache, cache_copies=cache_copies, workers=workers, resume=resume,
        valid_fraction=valid_fraction, test_fraction=test_fraction, calibrate=calibrate,
        progress=_progress(),
    )  # fmt: skip
    result = run_training(options)
    metrics = result.config.metrics
    _say(
        f"model written to {result.run_dir}: validation accuracy {metrics['accuracy']:.4f}, "
        f"ROC-AUC {_fmt(metrics['roc_auc'])}, threshold {result.config.threshold:.4f}, "
        f"temperature {result.config.temperature:.3f}"
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
    quiet: QuietOption = False,
) -> None:
    """Combine trained runs into one model: mean of their logits, threshold chosen on validation.

    The members must share their split, preprocessing and re-encoding (train them with the same
    --data, split seed, fractions, --audit, --reencode, backbone family and --image-size).
    """
    from deepfake_detect.ensemble import build_ensemble

    _setup(quiet)
    config = build_ensemble(
        models, output, half=half, combine=combine, batch_size=batch_size, workers=workers,
        device=device,
        progress=_progress(),
    )  # fmt: skip
    m = config.metrics
    _say(
        f"{'ensemble' if config.members else 'weight average'} of {len(models)} in {output}: "
        f"validation accuracy {m['accuracy']:.4f}, "
        f"ROC-AUC {_fmt(m['roc_auc'])}, threshold {config.threshold:.4f}"
    )


@app.command()
def audit(
    data: DataOption,
    output: Annotated[
        Path | None, typer.Option("--output", metavar="FILE", help="Write the report as JSON.")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit with status 1 when a shortcut is found.")
    ] = False,
    images: Annotated[bool, typer.Option(help="Include every image's facts in the JSON.")] = False,
    workers: Annotated[int, typer.Option(help="Reading threads.")] = 2,
    max_pixels: MaxPixelsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Audit a dataset: formats, sizes, JPEG quality, duplicates, and shortcuts.

    The report is printed, and with --output also written as JSON (then --quiet prints nothing).
    """
    from deepfake_detect.audit import cached_audit
    from deepfake_detect.checkpoint import atomic_write_json, check_output_path
    from deepfake_detect.datasets import index_dataset

    quiet = _setup(quiet, max_pixels)

    if output is not None and output.suffix.lower() != ".json":
        raise ValueError(f"--output must end in .json, not {output.name!r}")
    if output is not None:
        check_output_path(output)
    report = cached_audit(index_dataset(data), workers=workers, progress=_progress())
    if output is None or not quiet:
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
    figure_history: Annotated[
        bool,
        typer.Option(
            "--figure-history",
            help="Give every image the processing history of ../shared/fake-only's diffusion "
            "faces first (real photos with the same history: their false alarms).",
        ),
    ] = False,
    label: Annotated[
        str | None,
        typer.Option(
            metavar="CLASS",
            help="real or fake: every image of --data is of this class (e.g. a folder of real "
            "photos only, for the false-alarm rate).",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option()] = 32,
    device: DeviceOption = "auto",
    max_pixels: MaxPixelsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Evaluate a model on one split: metrics.json, report, confusion matrix, ROC.

    Images that the model's recorded split does not know (never trained on) count as test.
    """
    from deepfake_detect.evaluation import check_report_folder, evaluation_records
    from deepfake_detect.evaluation import evaluate as run_evaluation
    from deepfake_detect.inference import load_detector
    from deepfake_detect.metrics import format_summary_table

    quiet = _setup(quiet, max_pixels)
    if split not in ("train", "valid", "test", "all"):
        raise ValueError(f"--split must be test, valid, train or all, not {split!r}")
    if label is not None and label not in ("real", "fake"):
        raise ValueError(f"--label must be real or fake, not {label!r}")
    class_label = None if label is None else int(label == "fake")
    check_report_folder(output)
    detector = load_detector(model, device=device)
    records = evaluation_records(data, split, detector.model_dir, label=class_label)
    metrics = run_evaluation(
        detector, records, output, threshold=threshold, batch_size=batch_size,
        jpeg_quality=jpeg_quality, progress=_progress(), history=figure_history,
    )  # fmt: skip
    if quiet:
        return
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
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="PATH", help="Image files or folders (recursive)."),
    ],
    model: ModelOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", metavar="FILE", help="FILE.csv, FILE.json or FILE.jsonl; - for stdout."
        ),
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format", metavar="FORMAT",
            help="csv, json or jsonl. Default: from the --output suffix; csv for -.",
        ),
    ] = None,
    threshold: Annotated[float | None, typer.Option(help="Default: the model's.")] = None,
    batch_size: Annotated[int, typer.Option()] = 32,
    device: DeviceOption = "auto",
    max_pixels: MaxPixelsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Score images: P(fake) and a real/fake label for each, with the threshold between them."""
    from deepfake_detect.checkpoint import check_output_path, check_threshold
    from deepfake_detect.inference import load_detector, scan_inputs

    _setup(quiet, max_pixels)
    kind = prediction_format(output, output_format)
    if output is not None and str(output) != STDOUT:
        check_output_path(output)
    files, skipped = scan_inputs(paths)
    detector = load_detector(model, device=device)
    cut = detector.threshold if threshold is None else check_threshold(threshold)
    predictions = detector.score(files, batch_size=batch_size, threshold=cut, progress=_progress())
    records = [p.to_dict() for p in predictions]
    header = {**detector.info(), "threshold": cut}
    if output is None:
        typer.echo(format_prediction_table(records, cut))
    else:
        write_predictions(output, kind, records, header)
    _say(prediction_summary(records, skipped), err=True)
    if any(r["error"] is not None for r in records):
        raise typer.Exit(1)


def prediction_format(output: Path | None, given: str | None) -> str:
    """csv, json or jsonl: as --format says, else by the --output suffix (csv for stdout)."""
    kinds = sorted(set(PREDICTION_FORMATS.values()))
    if given is not None and given.lower() not in kinds:
        raise ValueError(f"--format must be one of {', '.join(kinds)}, not {given!r}")
    if output is None or str(output) == STDOUT:
        return (given or "csv").lower()
    by_suffix = PREDICTION_FORMATS.get(output.suffix.lower())
    if by_suffix is None:
        suffixes = ", ".join(PREDICTION_FORMATS)
        raise ValueError(f"--output must end in {suffixes} (or be -), not {output.name!r}")
    if given is not None and given.lower() != by_suffix:
        raise ValueError(f"--format {given} contradicts --output {output.name}")
    return by_suffix


def prediction_summary(records: list[dict], skipped: list[Path]) -> str:
    failed = sum(r["error"] is not None for r in records)
    fakes = sum(r["label"] == "fake" for r in records)
    reals = len(records) - fakes - failed
    noun = "image" if len(records) == 1 else "images"
    line = f"{len(records)} {noun}: {fakes} fake, {reals} real, {failed} failed"
    if skipped:
        files = "file" if len(skipped) == 1 else "files"
        line += f"; {len(skipped)} other {files} skipped as not images, first: {skipped[0]}"
    return line


def format_prediction_table(records: list[dict], threshold: float) -> str:
    width = max([len("path"), *(len(r["path"]) for r in records)])
    lines = [f"{'path':<{width}}  {'score':>6}  {'label':<5}  {'threshold':>9}  error"]
    for r in records:
        score = "" if r["score"] is None else f"{r['score']:.4f}"
        lines.append(
            f"{r['path']:<{width}}  {score:>6}  {r['label'] or '':<5}  {threshold:>9.4f}  "
            f"{r['error'] or ''}"
        )
    return "\n".join(lines)


def render_predictions(kind: str, records: list[dict], header: dict) -> str:
    """CSV (path,score,label,error,threshold); JSON, one object: the model, its threshold and
    the predictions; JSON Lines: that header object first, then one line per prediction."""
    if kind == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({**r, "threshold": header["threshold"]} for r in records)
        return buffer.getvalue()
    if kind == "json":
        return json.dumps({**header, "predictions": records}, indent=2) + "\n"
    return "".join(json.dumps(line) + "\n" for line in [header, *records])


CSV_FIELDS = ["path", "score", "label", "error", "threshold"]


def write_predictions(path: Path, kind: str, records: list[dict], header: dict) -> None:
    """Write to stdout for -, else atomically (any file name, even one that is not UTF-8)."""
    from deepfake_detect.checkpoint import atomic_write_bytes

    text = render_predictions(kind, records, header)
    if str(path) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write_bytes(path, text.encode(errors="surrogateescape"))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _is_usage_error(exc: Exception) -> bool:
    """A missing, unknown or malformed option. Typer 0.12-0.2x raise click's exceptions; later
    versions raise those of their own copy of click, which derive from typer.TyperException."""
    import click

    kinds = (click.ClickException, getattr(typer, "TyperException", click.ClickException))
    return isinstance(exc, kinds) and hasattr(exc, "format_message")


def _is_abort(exc: Exception) -> bool:
    import click

    return isinstance(exc, (click.exceptions.Abort, getattr(typer, "Abort", click.Abort)))


def _interrupted_note(args: list[str]) -> str:
    """What Ctrl-C left behind: outputs are written whole at the end, and a training run keeps
    every complete epoch."""
    command = next((a for a in args if not a.startswith("-")), None)  # global options are flags
    if command == "train":
        return "a training run keeps every epoch it completed: continue it with --resume"
    return "nothing written"


def main() -> None:
    """Entry point: one-line errors for the user's mistakes, tracebacks only when debugging."""
    if len(sys.argv) <= 1:
        sys.argv.append("--help")  # no arguments: the help, and status 0
    try:
        # standalone_mode=False: typer.Exit's code is returned instead of raised. The warning
        # filters that --quiet sets are undone afterwards (the CLI may run in-process).
        with warnings.catch_warnings():
            code = app(standalone_mode=False, prog_name="deepfake-detect")
    except (DetectorError, ValueError, OSError) as exc:
        if os.environ.get("DEEPFAKE_DETECT_DEBUG"):
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, OSError) and exc.filename:
            message = f"{exc.filename}: {exc.strerror}"
        typer.echo(f"error: {message}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo(f"interrupted; {_interrupted_note(sys.argv[1:])}", err=True)
        sys.exit(130)
    except Exception as exc:
        if _is_abort(exc):  # how Typer before 0.2x and click report Ctrl-C
            typer.echo(f"interrupted; {_interrupted_note(sys.argv[1:])}", err=True)
            sys.exit(130)
        if not _is_usage_error(exc):
            raise
        typer.echo(f"error: {exc.format_message()} (see deepfake-detect --help)", err=True)
        sys.exit(exc.exit_code)
    if code == 130:  # Typer turns Ctrl-C inside a command into Exit(130), silently
        typer.echo(f"interrupted; {_interrupted_note(sys.argv[1:])}", err=True)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
