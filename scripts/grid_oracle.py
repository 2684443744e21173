"""An oracle: does the model read where the JPEG 8x8 blocks of a face's last save fall?

Every training image was re-encoded by `train --reencode` as it was, its blocks on its own
grid (headshots-sg2's real images are PNG files, so that save was their first; the others were
JPEG 75 already, `../shared/data/README.md`). A face inside a larger photo is saved on that
photo's grid instead, which meets the face at an offset of 0-7 px each way (0-15 for the colour
planes, which 4:2:0 subsampling codes in 16 px blocks). Here each validation face (the model's
split manifest, a seeded sample) is put on a mid-grey canvas at an offset (dx, dy), the canvas
saved as JPEG 75, and exactly the face's own pixels cut out again: no resampling and no other
pixel of the canvas. Between the offsets, what differs is where the blocks fall and, with the
default grey canvas, which blocks along the face's edge mix face and grey; `--pad mirror` fills
the canvas by mirroring the face instead (as training's --grid-shift does), so that only the
grid moves. Measured for the bundled model (docs/experiments.md, candidate M): the grey edge,
not the grid, is what makes real faces look fake. (0, 0) puts every block where the face's
own are; (8, 8) the brightness blocks only.
`--then` changes each cut-out before it is scored: resized to 240 px (`resize-240`), saved
again as a JPEG of its own at quality 90 or 75 (`jpeg-90`, `jpeg-75`), or cut again so that the
save's blocks start at its first pixel (`realign`). Prints, at the model's threshold, fakes
caught and reals called fake (95% Wilson intervals) and ROC-AUC for each offset; with
`--by-source`, the rates per source too.

    python scripts/grid_oracle.py [--model DIR] [--pad grey|mirror] [--limit 400] [--then C]
"""

from __future__ import annotations

import argparse
import io
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))
from everyday_changes import reported, sample_arguments, sampled  # noqa: E402
from reframe_oracle import jpeg  # noqa: E402

OFFSETS = ((0, 0), (8, 8), (1, 0), (0, 1), (4, 4), (3, 5))
MARGIN = 16


def resaved_at(
    face: Image.Image, offset: tuple[int, int], quality: int = 75, pad: str = "grey"
) -> Image.Image:
    """`face` on a canvas at MARGIN + offset, saved as JPEG, and cut out again. The canvas
    around it is mid grey (`pad="grey"`: a face on a plain background) or the face mirrored
    (`"mirror"`: a face continuous with its surroundings, as in a photo)."""
    dx, dy = offset
    x, y = MARGIN + dx, MARGIN + dy
    if pad == "mirror":
        pixels = np.asarray(face.convert("RGB"))
        widths = ((y, MARGIN - dy), (x, MARGIN - dx), (0, 0))
        canvas = Image.fromarray(np.pad(pixels, widths, mode="symmetric"))
    else:
        canvas = Image.new("RGB", (face.width + 2 * MARGIN, face.height + 2 * MARGIN), (128,) * 3)
        canvas.paste(face, (x, y))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=quality)
    with Image.open(io.BytesIO(buffer.getvalue())) as saved:
        return saved.convert("RGB").crop((x, y, x + face.width, y + face.height))


def realigned(image: Image.Image, offset: tuple[int, int]) -> Image.Image:
    """The cut-out without the columns and rows before the first block of the save."""
    cut_x, cut_y = ((8 - v) % 8 for v in offset)
    return image.crop((cut_x, cut_y, image.width, image.height))


THEN = {
    "none": lambda image, offset: image,
    "resize-240": lambda image, offset: image.resize((240, 240), Image.Resampling.BICUBIC),
    "jpeg-90": lambda image, offset: jpeg(image, 90),
    "jpeg-75": lambda image, offset: jpeg(image, 75),
    "realign": realigned,
}


def _cells(rates: dict) -> list[str]:
    cells = []
    for key in ("detection_rate", "false_alarm_rate"):
        if rates[key] is None:
            cells.append("-")
            continue
        low, high = rates[key + "_interval"]
        cells.append(f"{100 * rates[key]:.1f}% [{100 * low:.1f}, {100 * high:.1f}]")
    return cells


def main(argv: list[str] | None = None) -> int:
    return reported(run, argv)


def run(argv: list[str] | None) -> int:
    from deepfake_detect.evaluation.metrics import alarm_rates
    from deepfake_detect.inference import load_detector

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sample_arguments(parser, split="valid", limit=400)
    parser.add_argument("--pad", choices=("grey", "mirror"), default="grey",
                        help="what surrounds the face on the canvas it is saved in")  # fmt: skip
    parser.add_argument("--then", choices=sorted(THEN), default="none",
                        help="change each cut-out before it is scored")  # fmt: skip
    parser.add_argument("--by-source", action="store_true", help="rates per source too")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    records = sampled(args, random.Random(args.seed))
    detector = load_detector(args.model)
    labels = np.array([r.label for r in records])
    faces = []
    for record in records:
        with Image.open(record.path) as image:
            faces.append(image.convert("RGB"))
    sources = sorted({r.source for r in records})
    print(f"{len(records)} {args.split} faces, threshold {detector.threshold:.4f}, "
          f"then {args.then}, {args.pad} around the face")  # fmt: skip
    print("| offset (dx, dy) | fakes caught | reals called fake | ROC-AUC |")
    print("| --- | --- | --- | --- |")
    report = {"images": len(records), "threshold": detector.threshold, "then": args.then,
              "pad": args.pad, "offsets": {}}  # fmt: skip
    for offset in OFFSETS:
        changed = [THEN[args.then](resaved_at(f, offset, pad=args.pad), offset) for f in faces]
        scores = np.array([p.score for p in detector.score(changed)])
        rates = alarm_rates(labels, scores, detector.threshold)
        auc = float(roc_auc_score(labels, scores))
        row = {**rates, "roc_auc": auc, "per_source": {}}
        cells = _cells(rates)
        print(f"| {offset} | {cells[0]} | {cells[1]} | {auc:.4f} |")
        for source in sources if args.by_source else ():
            mask = np.array([r.source == source for r in records])
            row["per_source"][source] = alarm_rates(labels[mask], scores[mask], detector.threshold)
            cells = _cells(row["per_source"][source])
            print(f"|   {source} ({mask.sum()}) | {cells[0]} | {cells[1]} | |")
        report["offsets"][f"{offset[0]},{offset[1]}"] = row
    if args.json:
        from deepfake_detect.files import atomic_write_json

        atomic_write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
