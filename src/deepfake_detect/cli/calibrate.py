"""`calibrate`: re-fit a model's threshold and temperature on the user's own labelled images."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

import typer

from deepfake_detect.cli.common import (
    DataOption,
    FolderModelOption,
    MaxPixelsOption,
    PrecisionOption,
    QuietOption,
    ThresholdRuleOption,
    fmt,
    setup,
)


def calibrate(
    data: DataOption,
    output: Annotated[Path, typer.Option("--output", metavar="DIR", help="The new model folder.")],
    model: FolderModelOption = None,
    target_fpr: Annotated[
        float | None,
        typer.Option(
            "--target-fpr",
            metavar="F",
            help="Choose the threshold that calls at most this share of the real images fake "
            "(default: --threshold-rule).",
        ),
    ] = None,
    threshold_rule: ThresholdRuleOption = "recalibrated",
    batch_size: Annotated[int, typer.Option()] = 32,
    precision: PrecisionOption = "auto",
    max_pixels: MaxPixelsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Fit the temperature and threshold on your own images (real/ and fake/ folders), for
    images unlike the model's: writes a new model folder with the same weights, the new
    numbers and where they came from. Score with it as with any model (--model DIR)."""
    from deepfake_detect.data.datasets import index_dataset
    from deepfake_detect.evaluation.calibration import recalibrate
    from deepfake_detect.evaluation.metrics import THRESHOLD_RULES
    from deepfake_detect.inference import load_detector
    from deepfake_detect.inference.detector import check_batching

    quiet = setup(quiet, max_pixels)
    if target_fpr is not None and not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"--target-fpr must be within [0, 1), got {target_fpr}")
    if threshold_rule not in THRESHOLD_RULES:
        raise ValueError(f"--threshold-rule must be one of {', '.join(THRESHOLD_RULES)}")
    check_batching(batch_size, None)
    if precision == "auto" and importlib.util.find_spec("torch") is not None:
        precision = "fp32"  # what the new folder scores in: it carries no int8 file
    detector = load_detector(model, precision=precision)
    records = index_dataset(data)
    names = [Path(d).name for d in data]
    fitted = recalibrate(
        detector,
        records,
        output,
        target_fpr=target_fpr,
        threshold_rule=threshold_rule,
        data_names=names,
        batch_size=batch_size,
    )
    if not quiet:
        m, old = fitted["metrics"], fitted["from_model"]
        fpr = m.get("false_alarm_rate")
        typer.echo(
            f"{fitted['images']} images: threshold {old['threshold']:.4f} -> "
            f"{fitted['threshold']:.4f}, temperature {old['temperature']:.3f} -> "
            f"{fitted['temperature']:.3f}; ECE {fmt(fitted['ece_before'])} -> "
            f"{fmt(fitted['ece_after'])}; on these images: false-positive rate {fmt(fpr)}, "
            f"balanced accuracy {fmt(m.get('balanced_accuracy'))}\nwritten: {output}"
        )
