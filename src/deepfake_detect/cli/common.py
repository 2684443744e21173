"""What every command shares: --quiet, --max-pixels, progress bars, messages and the options
that several commands take."""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

STDOUT = "-"
state = {"quiet": False}  # --quiet before the command; reset by every invocation


def setup(quiet: bool, max_pixels: int | None = None) -> bool:
    """Per command: --quiet (given before or after the command) leaves only errors on stderr,
    and no progress bars; --max-pixels raises the image size limit. Returns the quiet flag."""
    quiet = state["quiet"] = quiet or state["quiet"]
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("deepfake_detect").setLevel(logging.ERROR if quiet else logging.INFO)
    if quiet:
        warnings.simplefilter("ignore")
    from deepfake_detect.data.images import max_pixels_limit, set_max_pixels

    if max_pixels is not None:
        if max_pixels <= 0:
            raise ValueError(f"--max-pixels must be a positive number of pixels, got {max_pixels}")
        set_max_pixels(max_pixels)
    max_pixels_limit()  # a bad DEEPFAKE_DETECT_MAX_PIXELS is refused now, before any output
    return quiet


# glibc's mallopt parameters (<malloc.h>), the values the scoring commands set, and the
# environment variables that set the same at a process's start (for server worker processes)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
SCORING_MALLOC = {
    M_ARENA_MAX: ("MALLOC_ARENA_MAX", 1),
    M_MMAP_THRESHOLD: ("MALLOC_MMAP_THRESHOLD_", 32 << 20),
    M_TRIM_THRESHOLD: ("MALLOC_TRIM_THRESHOLD_", 128 << 20),
}
MALLOC_ENVIRONMENT = {name: str(value) for name, value in SCORING_MALLOC.values()}
MALLOC_VARIABLES = (*MALLOC_ENVIRONMENT, "GLIBC_TUNABLES")


def tune_malloc() -> bool:
    """Scoring commands, before any thread starts: glibc's malloc as a scoring run wants it.

    - One arena: by default every thread that allocates gets an arena of its own (up to 8 per
      CPU), and memory freed in one is not reused by another, so a run's resident size drifts
      upward with each decoding and ONNX Runtime thread (about 15 MB over the first 2,000
      files). One arena keeps peak memory flat.
    - Fixed mmap and trim thresholds (32 MB, 128 MB): with glibc's adaptive ones the arrays of
      each image (0.2 and 0.8 MB at 256 px) go back to the kernel when freed and fault in again
      for the next image, about 350 page faults per image, which more than doubled the time of
      the pixel lookup (0.22 to 0.55 ms per 256 px image).

    Measured: docs/experiments.md, "Peak memory and the allocator". True when set; a variable
    of the user's that tunes malloc, another C library or another system leaves it alone."""
    if any(os.environ.get(name) for name in MALLOC_VARIABLES):
        return False
    if not sys.platform.startswith("linux") or not glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return all([mallopt(key, value) == 1 for key, (_, value) in SCORING_MALLOC.items()])


def glibc() -> bool:
    """Whether this process runs on glibc (musl and others have no mallopt of this kind)."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):
        return False


def show_progress() -> bool:
    """Progress bars go to stderr when it is a terminal, unless --quiet."""
    return sys.stderr.isatty() and not state["quiet"]


def say(message: str, err: bool = False) -> None:
    """A line for the user (results on stdout, summaries on stderr); silent under --quiet."""
    if not state["quiet"]:
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
        metavar="MODEL",
        help="Run folder of a trained model, or an exported .onnx file. Default: bundled.",
    ),
]
FolderModelOption = Annotated[  # commands that need the weights, not only a network to run
    Path | None,
    typer.Option(
        "--model",
        metavar="MODEL",
        help="Run folder of a trained model (an exported .onnx file will not do here). "
        "Default: bundled.",
    ),
]
FacesOption = Annotated[
    str,
    typer.Option(
        "--faces",
        metavar="off|on|auto",
        help="on: find the faces, crop each as the model's training images are framed and "
        "score each (the image's score is the highest face's); auto: crop only faces that "
        "fill a small part of the image, and score the whole image beside them (the highest "
        "score counts); off: score the whole image.",
    ),
]
EngineOption = Annotated[
    str,
    typer.Option(
        metavar="NAME",
        help="onnx (ONNX Runtime on the CPU, the default) or torch (PyTorch; needed for a GPU).",
    ),
]
PrecisionOption = Annotated[
    str,
    typer.Option(
        metavar="P",
        help="onnx engine: auto (fp32; the model's int8 file when torch is missing to export "
        "fp32), fp32 or int8.",
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        metavar="N",
        help="Threads decoding the next batch while one is scored; 0: each batch decoded on "
        "every CPU between scoring calls (default: 0 on 2 CPUs, else 1).",
    ),
]

ThresholdRuleOption = Annotated[
    str,
    typer.Option(
        help="How the threshold is chosen on the validation scores: recalibrated (where a "
        "class-balanced logistic fit of them says 1/2; steady) or max-balanced (the maximum of "
        "balanced accuracy)."
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


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def join_world(device: str):
    """Under torchrun, join the process group; returns this rank's World and device name
    (cuda:LOCAL_RANK on a GPU machine). Ranks other than 0 stay quiet: rank 0 reports for all.
    Without torchrun, a world of one and the device as given (torch is not imported)."""
    from deepfake_detect.distributed import launched_world, start_world

    world = launched_world()
    if not world.distributed:
        return world, device
    world, chosen = start_world(device)
    if not world.main:
        setup(True)
    return world, str(chosen)
