"""`compare`: several backbones trained and evaluated under one protocol, in one table."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import typer

from deepfake_detect.cli import train as train_command
from deepfake_detect.cli.common import DataOption, say, setup, show_progress

# train's options that compare sets for each run itself
SET_PER_RUN = ("output", "backbone", "resume")


def compare(
    data: DataOption,
    output: Annotated[
        Path, typer.Option("--output", help="Folder of the runs (runs/), the table and chart.")
    ],
    backbones: Annotated[
        str,
        typer.Option(
            metavar="NAME,NAME,...",
            help="timm names, comma-separated; the first is the reference of the paired "
            "differences.",
        ),
    ],
    leave_out: Annotated[
        list[str] | None,
        typer.Option(
            "--leave-out",
            metavar="SOURCE",
            help="Leave-one-source-out: train on every other source, test on every image of "
            "this one. Repeatable (one set of runs per source).",
        ),
    ] = None,
    eval_split: Annotated[
        str,
        typer.Option(
            help="The split the table measures: test (the research protocol) "
            "or valid (while choosing). Not used with --leave-out."
        ),
    ] = "test",
    jpeg_quality: Annotated[
        int | None,
        typer.Option(help="Re-encode both classes of the test images as JPEG at this quality."),
    ] = None,
    **training,
) -> None:
    """Train and evaluate each backbone under the same protocol, split and seed; write a table
    (comparison.md, comparison.csv) and a chart (comparison.png) to --output.

    Takes every option of train. Run the same command again to resume: finished runs are
    skipped, unfinished ones resumed, and the table is rewritten.
    """
    setup(training.pop("quiet"), training.pop("max_pixels"))
    # as train converts its options to TrainOptions'
    training["audit"] = training.pop("run_audit")
    training["fake_only"] = training["fake_only"] or []
    training["source_train_size"] = training["source_train_size"] or []
    from deepfake_detect.training import TrainOptions
    from deepfake_detect.training.comparison import CompareOptions
    from deepfake_detect.training.comparison import compare as run_comparison

    names = [name.strip() for name in backbones.split(",") if name.strip()]
    first = names[0] if names else "legacy_xception"  # an empty list is refused below
    template = TrainOptions(
        data=data, output=output, backbone=first, progress=show_progress(), **training
    )
    options = CompareOptions(
        template, names, leave_out=leave_out or [], eval_split=eval_split,
        jpeg_quality=jpeg_quality,
    )  # fmt: skip
    result = run_comparison(options)
    say((output / "comparison.md").read_text().rstrip())
    say(f"written to {', '.join(str(path) for path in result.files)}", err=True)


def _take_training_options(command):
    """Give the command every option of train but those it sets per run: one list of options,
    so that an option added to train is one of compare's too."""
    own = inspect.signature(command, eval_str=True)
    taken = {*own.parameters, *SET_PER_RUN}
    trains = inspect.signature(train_command.train, eval_str=True).parameters.values()
    parameters = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in [*own.parameters.values(), *(p for p in trains if p.name not in taken)]
        if p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    command.__signature__ = own.replace(parameters=parameters)
    command.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": None}
    return command


compare = _take_training_options(compare)
