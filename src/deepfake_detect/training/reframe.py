"""`train --reframe SOURCE`: each image of a source framed as the others are, around its face.

Every real training face is an aligned FFHQ crop whose face fills about three quarters of the
picture, while the diffusion faces, all fake, are portraits whose face fills about half
(`scripts/framing_probe.py`): a network can learn the framing instead of the face, and then
misses a generated face framed tightly, or calls a wide real photo fake. Reframing crops each
training and validation image of the named sources around its largest face exactly as
`--faces` crops faces for scoring (`inference.faces.crop_box`, the model's crop policy), with
the crop's corner moved down to the 8 px JPEG block grid, so that a re-encoded image keeps the
grid it was compressed on (`scripts/grid_oracle.py` shows what moving it does). An image where
no face is found is kept whole. The boxes are found once and kept in the run folder
(`reframe.json`), so a resumed run reads the same crops.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from deepfake_detect.data.datasets import ImageRecord
from deepfake_detect.data.images import load_image
from deepfake_detect.errors import DataError
from deepfake_detect.files import atomic_write_json

log = logging.getLogger("deepfake_detect")

REFRAME_NAME = "reframe.json"
GRID = 8  # pixels: the JPEG block


def check_sources(records: Sequence[ImageRecord], sources: Sequence[str]) -> None:
    known = {r.source for r in records}
    for source in sources:
        if source not in known:
            raise DataError(f"--reframe {source}: no source of that name (sources: "
                            f"{', '.join(sorted(known))})")  # fmt: skip


def on_grid(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The same square with its corner moved up and left onto the block grid (never outside
    the image, since a corner only moves towards the origin)."""
    x1, y1, x2, y2 = box
    left, top = x1 - x1 % GRID, y1 - y1 % GRID
    return left, top, left + (x2 - x1), top + (y2 - y1)


def find_boxes(records: Sequence[ImageRecord], policy) -> dict[str, list[int] | None]:
    """Each record's crop (by path), or None where no face is found."""
    from deepfake_detect.inference.faces import crop_box, largest, load_face_detector

    detector = load_face_detector(policy.detector, min_face=policy.min_face)
    boxes = {}
    for record in records:
        image = load_image(record.path)
        face = largest(detector.detect(image))
        boxes[str(record.path)] = (
            None if face is None else list(on_grid(crop_box(face, image.size, policy)))
        )
    return boxes


def reframe(
    records: Sequence[ImageRecord],
    sources: Sequence[str],
    policy,
    cache: Path | None = None,
) -> tuple[list[ImageRecord], dict[str, list[int] | None]]:
    """The records with `crop` set for the images of `sources`, and the boxes (by path).
    Boxes are read from `cache` when it holds every image asked for, else found."""
    check_sources(records, sources)
    chosen = [r for r in records if r.source in sources]
    boxes = _read(cache) if cache is not None else {}
    if any(str(r.path) not in boxes for r in chosen):
        boxes = find_boxes(chosen, policy)
    missed = sum(boxes[str(r.path)] is None for r in chosen)
    if missed:
        log.warning("--reframe: no face found in %d of %d images: those are kept whole",
                    missed, len(chosen))  # fmt: skip
    out = [
        dataclasses.replace(r, crop=tuple(boxes[str(r.path)]))
        if r.source in sources and boxes[str(r.path)] is not None
        else r
        for r in records
    ]
    return out, {str(r.path): boxes[str(r.path)] for r in chosen}


def write_boxes(boxes: dict, path: Path) -> None:
    atomic_write_json(path, boxes)


def _read(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read the reframing boxes: {err}") from err
