"""Portraits where the face is a small part of the frame: what --faces does to false alarms.

    python scripts/faces_in_frame.py --data ../shared/data [--model M] [--json out.json]

Every held-out image of a split manifest (default: the bundled model's) is scored four ways,
each saved as JPEG quality 75: as it is (the tight framing the model was trained on); pasted at
a random place of a cluttered 800x600 frame at 120-200 px (the face fills a fifth to a third of
the frame's height) and scored whole; and that frame with `--faces on` and `--faces auto`.
Printed as fakes caught and real photos called fake, with 95% Wilson intervals.
`--frame 1024 768 --face-side 256 256` pastes each face at its own 256 px instead, so that a
face crop needs no enlarging: a face in a larger photo rather than a small, blurred one.
`--people K` puts K faces in each frame, a group photo: the scored face and K - 1 real faces of
the same split drawn at random (a fake among real people, or real people only), each in a cell
of its own, so that what `--faces auto` scores is the highest of K faces and the whole frame.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from everyday_changes import manifest_records, reported, sample_arguments, sampled  # noqa: E402
from face_detectors import background  # noqa: E402

WAYS = ("tight", "in frame, whole image", "in frame, --faces on", "in frame, --faces auto")


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)
    return buffer.getvalue()


def sized(path: Path, side: int) -> tuple[Image.Image, Image.Image]:
    """The face as it is, and at `side` x `side` pixels."""
    with Image.open(path) as face:
        face = face.convert("RGB")
    if face.size == (side, side):
        return face, face
    return face, face.resize((side, side), Image.Resampling.LANCZOS)


def layout(size: tuple[int, int], sides: tuple[int, int], count: int) -> tuple[int, int, int, int]:
    """A grid for `count` faces of up to `sides[1]` px, a face to a cell, as few rows as fit:
    columns, rows, and a cell's width and height."""
    width, height = size
    columns = max((c for c in range(1, count + 1) if width // c > sides[1]), default=0)
    rows = -(-count // columns) if columns else 0
    if not columns or height // rows <= sides[1]:
        raise ValueError(f"{count} faces of up to {sides[1]} px do not fit {width}x{height}")
    return columns, rows, width // columns, height // rows


def framed(
    path: Path,
    rng: random.Random,
    size: tuple[int, int] = (800, 600),
    sides=(120, 200),
    others: tuple[Path, ...] = (),
) -> tuple[bytes, bytes]:
    """The face as it is, and a frame holding it (and `others`, real faces beside it), as JPEG
    quality 75. One face goes anywhere in the frame; several go in cells of a grid, one each."""
    side = rng.randrange(sides[0], sides[1] + 1)
    width, height = size
    face, face_in_frame = sized(path, side)
    frame = background(rng, size)
    if not others:
        frame.paste(face_in_frame, (rng.randrange(width - side), rng.randrange(height - side)))
        return jpeg(face), jpeg(frame)
    columns, rows, cell_w, cell_h = layout(size, sides, len(others) + 1)
    cells = rng.sample([(c, r) for c in range(columns) for r in range(rows)], len(others) + 1)
    tiles = [face_in_frame] + [sized(o, rng.randrange(sides[0], sides[1] + 1))[1] for o in others]
    for tile, (column, row) in zip(tiles, cells, strict=True):
        x = column * cell_w + rng.randrange(cell_w - tile.width)
        y = row * cell_h + rng.randrange(cell_h - tile.height)
        frame.paste(tile, (x, y))
    return jpeg(face), jpeg(frame)


def main(argv: list[str] | None = None) -> int:
    return reported(run, argv)


def run(argv: list[str] | None) -> int:
    from deepfake_detect.evaluation.metrics import alarm_rates
    from deepfake_detect.inference import load_detector

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sample_arguments(parser, split="test")
    parser.add_argument("--frame", type=int, nargs=2, default=(800, 600), metavar=("W", "H"))
    parser.add_argument("--face-side", type=int, nargs=2, default=(120, 200), metavar=("LO", "HI"),
                        help="pixels: each face is pasted at a side drawn from LO-HI")  # fmt: skip
    parser.add_argument("--people", type=int, default=1,
                        help="faces in each frame: the scored one and K - 1 real ones")  # fmt: skip
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not (0 < args.face_side[0] <= args.face_side[1] < min(args.frame)):
        parser.error("--face-side must be 0 < LO <= HI < the frame's shorter side")
    if not 1 <= args.people <= 16:
        parser.error("--people must be 1-16")
    if args.people > 1:
        layout(tuple(args.frame), tuple(args.face_side), args.people)  # fits, or one line
    rng = random.Random(args.seed)
    records = sampled(args, rng)
    reals = [r.path for r in manifest_records(args.manifest, args.data, args.split) if r.label == 0]
    if len(reals) < args.people:
        raise ValueError(f"the {args.split} split has fewer than {args.people} real faces")
    detector = load_detector(args.model)
    frame, sides = tuple(args.frame), tuple(args.face_side)
    company = [
        tuple(rng.sample([p for p in reals if p != r.path], args.people - 1)) for r in records
    ]
    tight, frames = zip(
        *(framed(r.path, rng, frame, sides, c) for r, c in zip(records, company, strict=True)),
        strict=True,
    )
    scores = {
        WAYS[0]: detector.score(list(tight), faces="off"),
        WAYS[1]: detector.score(list(frames), faces="off"),
        WAYS[2]: detector.score(list(frames), faces="on"),
        WAYS[3]: detector.score(list(frames), faces="auto"),
    }
    labels = np.array([r.label for r in records])
    report = {"images": len(records), "threshold": detector.threshold, "frame": frame,
              "face_side": sides, "people": args.people}  # fmt: skip
    print("| framing | fakes caught | real photos called fake |\n| --- | --- | --- |")
    for way, predictions in scores.items():
        rates = alarm_rates(labels, np.array([p.score for p in predictions]), detector.threshold)
        report[way] = rates
        cells = [
            f"{100 * rates[k]:.1f}% [{100 * rates[k + '_interval'][0]:.1f}, "
            f"{100 * rates[k + '_interval'][1]:.1f}]"
            for k in ("detection_rate", "false_alarm_rate")
        ]
        print(f"| {way} | {cells[0]} | {cells[1]} |")
    missed = sum(bool(p.warnings) for p in scores[WAYS[2]])
    report["no_face_found"] = missed
    print(f"no face found in {missed} of {len(records)} frames")
    if args.json:
        from deepfake_detect.files import atomic_write_json

        atomic_write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
