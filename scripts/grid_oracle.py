"""An oracle: does the model read where the JPEG 8x8 blocks of the last save fall?

Every image of the training data was saved as JPEG (quality 75, `../shared/data/README.md`), and
a face saved again as it is keeps its blocks where they were. A face inside a larger photo does
not: wherever it sits in the photo, the photo's save lays a block grid that a face cut out of it
meets at an offset. Here each validation face (the model's split manifest, a seeded sample)
is put on a mid-grey canvas at an offset (dx, dy), the canvas saved as JPEG 75, and exactly the
face's own pixels cut out again: no resampling and no other pixel of the canvas, so the only
difference between the offsets is where the second save's blocks fall. Offsets that are
multiples of 8 put them where the first save's were. Prints, at the model's threshold, fakes
caught and reals called fake (95% Wilson intervals) and ROC-AUC for each offset.

    python scripts/grid_oracle.py [--model DIR] [--split valid] [--limit 400]
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
from everyday_changes import manifest_records  # noqa: E402

OFFSETS = ((0, 0), (8, 8), (1, 0), (0, 1), (4, 4), (3, 5))
MARGIN = 16


def resaved_at(face: Image.Image, offset: tuple[int, int], quality: int = 75) -> Image.Image:
    """`face` on a grey canvas at MARGIN + offset, saved as JPEG, and cut out again."""
    dx, dy = offset
    x, y = MARGIN + dx, MARGIN + dy
    canvas = Image.new("RGB", (face.width + 2 * MARGIN, face.height + 2 * MARGIN), (128,) * 3)
    canvas.paste(face, (x, y))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=quality)
    with Image.open(io.BytesIO(buffer.getvalue())) as saved:
        return saved.convert("RGB").crop((x, y, x + face.width, y + face.height))


def main() -> None:
    from deepfake_detect.evaluation.metrics import alarm_rates
    from deepfake_detect.inference import BUNDLED_DIR, load_detector

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--model", default=None, help="default: the bundled model")
    parser.add_argument("--manifest", type=Path, default=BUNDLED_DIR / "split_manifest.csv")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--limit", type=int, default=400, help="a seeded sample of N (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        records = manifest_records(args.manifest, args.data, args.split)
    except ValueError as error:
        parser.error(str(error))
    if args.limit:
        records = random.Random(args.seed).sample(records, min(args.limit, len(records)))
    detector = load_detector(args.model)
    labels = np.array([r.label for r in records])
    faces = []
    for record in records:
        with Image.open(record.path) as image:
            faces.append(image.convert("RGB"))
    print(f"{len(records)} {args.split} faces, threshold {detector.threshold:.4f}")
    print("| offset (dx, dy) | fakes caught | reals called fake | ROC-AUC |")
    print("| --- | --- | --- | --- |")
    for offset in OFFSETS:
        scores = np.array([p.score for p in detector.score([resaved_at(f, offset) for f in faces])])
        rates = alarm_rates(labels, scores, detector.threshold)
        cells = [
            f"{100 * rates[k]:.1f}% [{100 * rates[k + '_interval'][0]:.1f}, "
            f"{100 * rates[k + '_interval'][1]:.1f}]"
            for k in ("detection_rate", "false_alarm_rate")
        ]
        print(f"| {offset} | {cells[0]} | {cells[1]} | {roc_auc_score(labels, scores):.4f} |")


if __name__ == "__main__":
    main()
