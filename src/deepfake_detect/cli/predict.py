"""`predict`: score images, as a table, CSV, JSON or JSON Lines."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from deepfake_detect.cli.common import (
    DeviceOption,
    EngineOption,
    FacesOption,
    MaxPixelsOption,
    ModelOption,
    PrecisionOption,
    QuietOption,
    WorkersOption,
    join_world,
    say,
    setup,
    show_progress,
    tune_malloc,
)
from deepfake_detect.cli.outputs import STDOUT, prediction_writer
from deepfake_detect.data.video import DEFAULT_FRAMES

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
            "--format",
            metavar="FORMAT",
            help="csv, json or jsonl. Default: from the --output suffix; csv for -.",
        ),
    ] = None,
    threshold: Annotated[float | None, typer.Option(help="Default: the model's.")] = None,
    batch_size: Annotated[int, typer.Option()] = 32,
    engine: EngineOption = "onnx",
    precision: PrecisionOption = "auto",
    workers: WorkersOption = None,
    device: DeviceOption = "auto",
    max_pixels: MaxPixelsOption = None,
    provenance: Annotated[
        bool,
        typer.Option(
            "--provenance/--no-provenance",
            help="Also report what each file's metadata claims about its origin (C2PA "
            "Content Credentials, generator traces): a separate signal, never mixed into the "
            "score; 'none' is no evidence either way.",
        ),
    ] = True,
    faces: FacesOption = "off",
    frames: Annotated[
        int,
        typer.Option(
            "--frames",
            metavar="N",
            help="Video files (mp4, mov, webm, mkv, avi): score N evenly spaced frames; the "
            "video's score is their mean, with the highest beside it.",
        ),
    ] = DEFAULT_FRAMES,
    quiet: QuietOption = False,
) -> None:
    """Score images: P(fake) and a real/fake label for each, with the threshold between them.

    Rows are written as they are scored (to a file, through a temporary one renamed at the end).
    """
    from deepfake_detect.data.video import check_frame_count, is_video
    from deepfake_detect.distributed import map_across_ranks
    from deepfake_detect.files import check_output_path
    from deepfake_detect.inference import load_detector, scan_inputs
    from deepfake_detect.inference.detector import check_batching, check_faces_mode
    from deepfake_detect.models.config import check_threshold
    from deepfake_detect.progress import progress_bar

    tune_malloc()  # before any decoding or ONNX Runtime thread allocates
    quiet = setup(quiet, max_pixels)
    world, device = join_world(device)
    check_faces_mode(faces)
    check_frame_count(frames)
    check_batching(batch_size, workers)
    kind = prediction_format(output, output_format)
    if output is not None and str(output) != STDOUT and world.main:
        check_output_path(output)
    files, skipped = scan_inputs(paths)
    detector = load_detector(
        model, device=device, engine=engine, precision=precision,
        spin=None if workers is None else workers == 0,  # nothing decodes beside the engine
    )  # fmt: skip
    cut = detector.threshold if threshold is None else check_threshold(threshold)
    header = {**detector.info(), "threshold": cut}
    width = max([len("path"), *(len(str(f)) for f in files)])
    counts = Counter()

    def score(part):  # under torchrun, each rank scores its part of each round
        return detector.iter_scores(
            part, batch_size=batch_size, threshold=cut, workers=workers, provenance=provenance,
            faces=faces, frames=frames,
        )  # fmt: skip

    scores = map_across_ranks(world, files, score, block=4 * batch_size, align=batch_size)
    if not world.main:  # rank 0 writes every row, in input order
        for _ in scores:
            pass
        return
    per_part = faces != "off" or any(is_video(f) for f in files)  # rows per face and frame
    with (
        prediction_writer(output, kind, header, width, faces=per_part) as writer,
        progress_bar(len(files), "scoring", show_progress()) as bar,
    ):
        for prediction in scores:
            writer.write(prediction.to_dict())
            counts[prediction.label or "failed"] += 1
            bar.update(1)
    say(prediction_summary(counts, skipped), err=True)
    if counts["failed"]:
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


def prediction_summary(counts: Counter, skipped: list[Path]) -> str:
    total = sum(counts.values())
    noun = "image" if total == 1 else "images"
    line = f"{total} {noun}: {counts['fake']} fake, {counts['real']} real, "
    line += f"{counts['failed']} failed"
    if skipped:
        files = "file" if len(skipped) == 1 else "files"
        line += f"; {len(skipped)} other {files} skipped as not images, first: {skipped[0]}"
    return line
