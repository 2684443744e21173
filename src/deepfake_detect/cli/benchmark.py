"""`benchmark`: scoring speed of each engine, against this machine's limit."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from deepfake_detect.cli.common import FolderModelOption, QuietOption, say, setup, tune_malloc


def benchmark(
    model: FolderModelOption = None,
    images: Annotated[
        list[Path] | None,
        typer.Option(
            "--images",
            metavar="PATH",
            help="JPEG files or folders for the pipeline and memory runs. Default: synthetic.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    seconds: Annotated[float, typer.Option(help="Seconds per engine measurement.")] = 10.0,
    batch_size: Annotated[int, typer.Option()] = 32,
    memory_files: Annotated[
        str, typer.Option(metavar="N,M", help="File counts of the two peak-memory runs.")
    ] = "1000,10000",
    quiet: QuietOption = False,
) -> None:
    """Images/s of PyTorch eager, ONNX fp32 and int8, and of the whole predict pipeline; the
    model's FLOPs and the machine's fp32 GEMM rate (its limit); cold start; peak memory. Every
    figure comes from this one run: read the ratios, which hold on a busy machine too."""
    from deepfake_detect.inference.benchmark import format_benchmark, run_benchmark

    tune_malloc()  # its pipeline runs in this process: allocate as predict does
    setup(quiet)
    counts = parse_counts(memory_files)
    if not 0 < seconds < math.inf:  # also refuses nan
        raise ValueError(f"--seconds must be a positive number of seconds, got {seconds}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    result = run_benchmark(
        model, images, seconds=seconds, batch_size=batch_size, memory_files=counts,
        say=lambda message: say(message, err=True),
    )  # fmt: skip
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else format_benchmark(result))


def parse_counts(text: str) -> tuple[int, int]:
    try:
        small, large = (int(part) for part in text.split(","))
    except ValueError:
        message = f"--memory-files must be two counts like 1000,10000, not {text!r}"
        raise ValueError(message) from None
    if small < 1:
        raise ValueError(f"--memory-files: counts must be at least 1, got {text}")
    if not small < large:
        raise ValueError(f"--memory-files: the second count must exceed the first, got {text}")
    return small, large
