"""`audit`: what in a dataset could let a detector cheat."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepfake_detect.cli.common import (
    DataOption,
    MaxPixelsOption,
    QuietOption,
    setup,
    show_progress,
)
from deepfake_detect.errors import DataError


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
    from deepfake_detect.data.audit import cached_audit
    from deepfake_detect.data.datasets import index_dataset
    from deepfake_detect.files import atomic_write_json, check_output_path

    quiet = setup(quiet, max_pixels)
    if workers < 1:  # checked here too: a cached audit reads nothing, and never checked it
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if output is not None and output.suffix.lower() != ".json":
        raise ValueError(f"--output must end in .json, not {output.name!r}")
    if output is not None:
        check_output_path(output)
    report = cached_audit(index_dataset(data), workers=workers, progress=show_progress())
    if output is None or not quiet:
        typer.echo(report.format_text())
    if len(report.unreadable) == len(report.facts):
        raise DataError(f"no image could be read ({len(report.facts)} unreadable, listed above)")
    if output is not None:
        atomic_write_json(output, report.to_dict(include_images=images))
    if strict and report.shortcuts:
        raise typer.Exit(1)


