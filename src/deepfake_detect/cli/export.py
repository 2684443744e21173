"""`export`: a model as one ONNX file, checked against PyTorch before it is written."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepfake_detect.cli.common import FolderModelOption, MaxPixelsOption, QuietOption, say, setup


def export(
    output: Annotated[
        Path, typer.Option("--output", metavar="FILE", help="The .onnx file to write.")
    ],
    model: FolderModelOption = None,
    precision: Annotated[
        str,
        typer.Option(
            metavar="P",
            help="fp32, or int8 (activations calibrated on --images; use training images).",
        ),
    ] = "fp32",
    images: Annotated[
        list[Path] | None,
        typer.Option(
            "--images",
            metavar="PATH",
            help="Real photos (files or folders; repeatable) to check the export on, and to "
            "calibrate int8 with. Default for fp32: synthetic images.",
        ),
    ] = None,
    max_pixels: MaxPixelsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Export a model to ONNX with its preprocessing, threshold and temperature in the file's
    metadata. ONNX Runtime is checked against PyTorch first: fp32 may differ by at most 1e-4 in
    P(fake), otherwise nothing is written (exit 2); for int8 the largest difference and the
    share of labels it changed are reported."""
    from deepfake_detect.files import check_output_path
    from deepfake_detect.inference import resolve_model
    from deepfake_detect.inference.export import export_onnx

    setup(quiet, max_pixels)
    if output.suffix.lower() != ".onnx":
        raise ValueError(f"--output must end in .onnx, not {output.name!r}")
    if precision not in ("fp32", "int8"):
        raise ValueError(f"--precision must be fp32 or int8, not {precision!r}")
    check_output_path(output)
    report = export_onnx(resolve_model(model), output, precision=precision, images=images)
    size = output.stat().st_size / 1e6
    kind = report.check_kind if report.check_images != 1 else report.check_kind[:-1]
    say(
        f"wrote {output} ({report.precision}, {size:.1f} MB); ONNX Runtime vs PyTorch on "
        f"{report.check_images} {kind}: max |difference in P(fake)| "
        f"{report.max_abs_diff:.1e}, {report.flipped:.1%} of labels changed"
    )
