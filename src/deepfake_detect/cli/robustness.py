"""`robustness`: accuracy and ROC-AUC under graded perturbations, a table and a plot each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepfake_detect.cli.common import (
    DataOption,
    EngineOption,
    MaxPixelsOption,
    ModelOption,
    PrecisionOption,
    QuietOption,
    setup,
    show_progress,
)


def robustness(
    data: DataOption,
    output: Annotated[
        Path, typer.Option("--output", metavar="DIR", help="Folder for the table and plots.")
    ],
    model: ModelOption = None,
    split: Annotated[str, typer.Option(help="test, valid, train or all.")] = "test",
    perturbations: Annotated[
        str,
        typer.Option(
            metavar="NAMES",
            help="Comma-separated: jpeg (quality 95-30), blur (sigma 0-3), downscale (1-0.25, "
            "then back up), noise (sigma 0-16), screenshot (bilinear resample at a display "
            "scale).",
        ),
    ] = "jpeg,blur,downscale,noise,screenshot",
    batch_size: Annotated[int, typer.Option()] = 32,
    engine: EngineOption = "onnx",
    precision: PrecisionOption = "auto",
    max_pixels: MaxPixelsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Measure a model under perturbations a shared image goes through, each at graded levels:
    robustness.csv / .md / .json and robustness-NAME.png. Train with --augment robust to trade
    clean accuracy for robustness, and measure it here."""
    from deepfake_detect.data.prepare import evaluation_records
    from deepfake_detect.evaluation.robustness import (
        check_perturbations,
        format_table,
    )
    from deepfake_detect.evaluation.robustness import robustness as measure
    from deepfake_detect.inference import load_detector

    quiet = setup(quiet, max_pixels)
    names = check_perturbations([n.strip() for n in perturbations.split(",") if n.strip()])
    if split not in ("test", "valid", "train", "all"):
        raise ValueError(f"--split must be test, valid, train or all, not {split!r}")
    detector = load_detector(model, engine=engine, precision=precision)
    records = evaluation_records(data, split, detector.model_dir)
    rows = measure(detector, records, output, perturbations=names, batch_size=batch_size,
                   progress=show_progress())  # fmt: skip
    if not quiet:
        typer.echo(format_table(rows))
        typer.echo(f"written: {output}")
