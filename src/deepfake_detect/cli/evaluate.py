"""`evaluate`: a model's metrics, report and figures on a labelled split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepfake_detect.cli.common import (
    DataOption,
    DeviceOption,
    EngineOption,
    FacesOption,
    MaxPixelsOption,
    ModelOption,
    PrecisionOption,
    QuietOption,
    fmt,
    join_world,
    setup,
    show_progress,
    tune_malloc,
)


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
    change: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="An everyday change to every image first, then saved as JPEG: resize-128, "
            "rotate-5, crop-80, blur-1 (each at quality 75), jpeg-50 or jpeg-30; to tell framing "
            "from enlargement, shrink-80, shrink-65 (resized to that share of each side) or "
            "crop-65 (the centre 65% kept).",
        ),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            metavar="CLASS",
            help="real or fake: every image of --data is of this class (e.g. a folder of real "
            "photos only, for the false-alarm rate).",
        ),
    ] = None,
    faces: FacesOption = "off",
    batch_size: Annotated[int, typer.Option()] = 32,
    engine: EngineOption = "onnx",
    precision: PrecisionOption = "auto",
    device: DeviceOption = "auto",
    max_pixels: MaxPixelsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Evaluate a model on one split: metrics.json, report, confusion matrix, ROC.

    Images that the model's recorded split does not know (never trained on) count as test.
    """
    from deepfake_detect.data.prepare import evaluation_records
    from deepfake_detect.evaluation.runs import check_report_folder
    from deepfake_detect.evaluation.runs import evaluate as run_evaluation
    from deepfake_detect.inference import load_detector
    from deepfake_detect.inference.detector import check_faces_mode

    tune_malloc()  # before any decoding or ONNX Runtime thread allocates
    quiet = setup(quiet, max_pixels)
    world, device = join_world(device)
    class_label = checked_options(split, label, change, jpeg_quality)
    check_numbers(threshold, jpeg_quality, batch_size)
    check_faces_mode(faces)
    if world.main:  # under torchrun, rank 0 alone touches the output
        check_report_folder(output)
    detector = load_detector(model, device=device, engine=engine, precision=precision)
    records = evaluation_records(data, split, detector.model_dir, label=class_label)
    metrics = run_evaluation(
        detector, records, output, threshold=threshold, batch_size=batch_size,
        jpeg_quality=jpeg_quality, progress=show_progress(), history=figure_history,
        change=change, faces=faces,
    )  # fmt: skip
    if not quiet and world.main:
        typer.echo(evaluation_summary(metrics, output))


def checked_options(split: str, label: str | None, change: str | None, quality: int | None):
    """Refuse bad option values before the model loads; returns the class of --label."""
    if split not in ("train", "valid", "test", "all"):
        raise ValueError(f"--split must be test, valid, train or all, not {split!r}")
    if label is not None and label not in ("real", "fake"):
        raise ValueError(f"--label must be real or fake, not {label!r}")
    if change is not None:
        from deepfake_detect.data.transforms import everyday_change

        everyday_change(change)
        if quality is not None:
            raise ValueError("--change sets its own JPEG quality: leave out --jpeg-quality")
    class_label = None if label is None else int(label == "fake")
    return class_label


def check_numbers(threshold: float | None, quality: int | None, batch_size: int) -> None:
    """Refuse bad numbers before the dataset is indexed (which takes a while on a large one)."""
    from deepfake_detect.evaluation.runs import check_jpeg_quality
    from deepfake_detect.inference.detector import check_batching
    from deepfake_detect.models.config import check_threshold

    if threshold is not None:
        check_threshold(threshold)
    check_jpeg_quality(quality)
    check_batching(batch_size, None)


def evaluation_summary(metrics: dict, output: Path) -> str:
    """The summary table, then a line per source when there are several."""
    from deepfake_detect.evaluation.metrics import format_summary_table

    lines = [format_summary_table(metrics)]
    if len(metrics["per_source"]) > 1:
        lines += [
            f"  {source}: {m['n_images']} images, accuracy {m['accuracy']:.4f}, "
            f"ROC-AUC {fmt(m['roc_auc'])}"
            for source, m in metrics["per_source"].items()
        ]
    return "\n".join([*lines, f"written to {output}"])
