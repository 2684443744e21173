"""`predict`: score images, as a table, CSV, JSON or JSON Lines."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from deepfake_detect.cli.common import (
    STDOUT,
    DeviceOption,
    MaxPixelsOption,
    ModelOption,
    QuietOption,
    say,
    setup,
    show_progress,
)

PREDICTION_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl"}


def predict(
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="PATH", help="Image files or folders (recursive)."),
    ],
    model: ModelOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", metavar="FILE", help="FILE.csv, FILE.json or FILE.jsonl; - for stdout."
        ),
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format", metavar="FORMAT",
            help="csv, json or jsonl. Default: from the --output suffix; csv for -.",
        ),
    ] = None,
    threshold: Annotated[float | None, typer.Option(help="Default: the model's.")] = None,
    batch_size: Annotated[int, typer.Option()] = 32,
    device: DeviceOption = "auto",
    max_pixels: MaxPixelsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Score images: P(fake) and a real/fake label for each, with the threshold between them."""
    from deepfake_detect.files import check_output_path
    from deepfake_detect.inference import load_detector, scan_inputs
    from deepfake_detect.models.config import check_threshold

    setup(quiet, max_pixels)
    kind = prediction_format(output, output_format)
    if output is not None and str(output) != STDOUT:
        check_output_path(output)
    files, skipped = scan_inputs(paths)
    detector = load_detector(model, device=device)
    cut = detector.threshold if threshold is None else check_threshold(threshold)
    predictions = detector.score(
        files, batch_size=batch_size, threshold=cut, progress=show_progress()
    )
    records = [p.to_dict() for p in predictions]
    header = {**detector.info(), "threshold": cut}
    if output is None:
        typer.echo(format_prediction_table(records, cut))
    else:
        write_predictions(output, kind, records, header)
    say(prediction_summary(records, skipped), err=True)
    if any(r["error"] is not None for r in records):
        raise typer.Exit(1)


def prediction_format(output: Path | None, given: str | None) -> str:
    """csv, json or jsonl: as --format says, else by the --output suffix (csv for stdout)."""
    kinds = sorted(set(PREDICTION_FORMATS.values()))
    if given is not None and given.lower() not in kinds:
        raise ValueError(f"--format must be one of {', '.join(kinds)}, not {given!r}")
    if output is None or str(output) == STDOUT:
        return (given or "csv").lower()
    by_suffix = PREDICTION_FORMATS.get(output.suffix.lower())
    if by_suffix is None:
        suffixes = ", ".join(PREDICTION_FORMATS)
        raise ValueError(f"--output must end in {suffixes} (or be -), not {output.name!r}")
    if given is not None and given.lower() != by_suffix:
        raise ValueError(f"--format {given} contradicts --output {output.name}")
    return by_suffix


def prediction_summary(records: list[dict], skipped: list[Path]) -> str:
    failed = sum(r["error"] is not None for r in records)
    fakes = sum(r["label"] == "fake" for r in records)
    reals = len(records) - fakes - failed
    noun = "image" if len(records) == 1 else "images"
    line = f"{len(records)} {noun}: {fakes} fake, {reals} real, {failed} failed"
    if skipped:
        files = "file" if len(skipped) == 1 else "files"
        line += f"; {len(skipped)} other {files} skipped as not images, first: {skipped[0]}"
    return line


def format_prediction_table(records: list[dict], threshold: float) -> str:
    width = max([len("path"), *(len(r["path"]) for r in records)])
    lines = [f"{'path':<{width}}  {'score':>6}  {'label':<5}  {'threshold':>9}  error"]
    for r in records:
        score = "" if r["score"] is None else f"{r['score']:.4f}"
        lines.append(
            f"{r['path']:<{width}}  {score:>6}  {r['label'] or '':<5}  {threshold:>9.4f}  "
            f"{r['error'] or ''}"
        )
    return "\n".join(lines)


def render_predictions(kind: str, records: list[dict], header: dict) -> str:
    """CSV (path,score,label,error,threshold); JSON, one object: the model, its threshold and
    the predictions; JSON Lines: that header object first, then one line per prediction."""
    if kind == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({**r, "threshold": header["threshold"]} for r in records)
        return buffer.getvalue()
    if kind == "json":
        return json.dumps({**header, "predictions": records}, indent=2) + "\n"
    return "".join(json.dumps(line) + "\n" for line in [header, *records])


CSV_FIELDS = ["path", "score", "label", "error", "threshold"]


def write_predictions(path: Path, kind: str, records: list[dict], header: dict) -> None:
    """Write to stdout for -, else atomically (any file name, even one that is not UTF-8)."""
    from deepfake_detect.files import atomic_write_bytes

    text = render_predictions(kind, records, header)
    if str(path) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write_bytes(path, text.encode(errors="surrogateescape"))


