"""`deepfake-detect`: a thin command line over the library.

Each command parses its options, calls one library function and formats the result. Known errors
become one line on stderr (exit 2); set DEEPFAKE_DETECT_DEBUG=1 for the traceback.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from deepfake_detect.cli import (
    audit,
    benchmark,
    calibrate,
    compare,
    evaluate,
    explain,
    export,
    predict,
    robustness,
    serve,
    train,
)
from deepfake_detect.cli.common import setup, state
from deepfake_detect.errors import DetectorError
from deepfake_detect.version import __version__

app = typer.Typer(
    name="deepfake-detect",
    help="Tell real face photographs from GAN-generated ones (score = P(fake)).",
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: Typer's rich panels print flags as if they took a value ("--strict
    # <bool>", Typer 0.2x), and plain text also reads well in a pipe or a log.
    rich_markup_mode=None,
)
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
    from deepfake_detect.data.images import set_max_pixels

    state["quiet"] = False
    set_max_pixels(None)
    setup(quiet)


COMMANDS = (
    train.train,
    train.ensemble,
    compare.compare,
    audit.audit,
    evaluate.evaluate,
    calibrate.calibrate,
    robustness.robustness,
    predict.predict,
    export.export,
    benchmark.benchmark,
    explain.explain,
    serve.serve,
)
for command in COMMANDS:
    app.command()(command)


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
    """What Ctrl-C left behind: outputs are written whole at the end, and a training run (also
    each of a comparison's) keeps every complete epoch."""
    command = next((a for a in args if not a.startswith("-")), None)  # global options are flags
    if command == "train":
        output = _option_value(args, "--output")
        if output is not None and not Path(output).is_dir():  # stopped before its first epoch
            return "no epoch had completed: nothing kept"
        return "a training run keeps every epoch it completed: continue it with --resume"
    if command == "compare":
        return (
            "a comparison keeps every epoch and evaluation it completed: run it again to continue"
        )
    return "nothing written"


def _option_value(args: list[str], name: str) -> str | None:
    """The value given to `name` (as `name V` or `name=V`), or None."""
    for k, arg in enumerate(args):
        if arg == name and k + 1 < len(args):
            return args[k + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


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
