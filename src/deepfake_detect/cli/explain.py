"""`explain`: a Grad-CAM heat-map of one image, written as a PNG over the image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepfake_detect.cli.common import (
    DeviceOption,
    FolderModelOption,
    MaxPixelsOption,
    QuietOption,
    say,
    setup,
)


def explain(
    image: Annotated[Path, typer.Argument(metavar="IMAGE", help="The image to explain.")],
    output: Annotated[
        Path, typer.Option("--output", metavar="FILE", help="The heat-map to write (.png).")
    ],
    model: FolderModelOption = None,
    device: DeviceOption = "auto",
    alpha: Annotated[
        float, typer.Option(metavar="A", help="Opacity of the map at its strongest, 0-1.")
    ] = 0.45,
    max_pixels: MaxPixelsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Show which regions drove the score: Grad-CAM on the network's last feature map, in
    colour over the image (red: strongest evidence for fake). Where the network looked, not
    proof. Uses PyTorch (the torch extra)."""
    from deepfake_detect.files import atomic_write_bytes, check_output_path

    try:
        from deepfake_detect.inference.explain import Explainer
    except ImportError:
        raise ValueError("explain needs PyTorch: pip install 'deepfake-detect[torch]'") from None

    setup(quiet, max_pixels)
    if output.suffix.lower() != ".png":
        raise ValueError(f"--output must end in .png, not {output.name!r}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"--alpha must be within 0-1, got {alpha}")
    if model is not None and model.suffix.lower() == ".onnx":
        raise ValueError(
            f"--model {model}: explain needs a model folder (its weights: an .onnx file "
            "carries no gradients)"
        )
    check_output_path(output)
    explanation = Explainer.load(model, device).explain(image)
    atomic_write_bytes(output, explanation.overlay_png(alpha))
    typer.echo(f"{image}\t{explanation.score:.4f}\t{explanation.label}")
    say(f"wrote {output}", err=True)
