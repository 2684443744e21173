"""Portraits where the face is a small part of the frame: what --faces does to false alarms.

    python scripts/faces_in_frame.py --data ../shared/data [--model M] [--json out.json]

Every held-out image of a split manifest (default: the bundled model's) is scored four ways,
each saved as JPEG quality 75: as it is (the tight framing the model was trained on); pasted at
a random place of a cluttered 800x600 frame at 120-200 px (the face fills a fifth to a third of
the frame's height) and scored whole; and that frame with `--faces on` and `--faces auto`.
Printed as fakes caught and real photos called fake, with 95% Wilson intervals.
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
from everyday_changes import manifest_records  # noqa: E402
from face_detectors import background  # noqa: E402

WAYS = ("tight", "in frame, whole image", "in frame, --faces on", "in frame, --faces auto")


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)
    return buffer.getvalue()


def framed(path: Path, rng: random.Random) -> tuple[bytes, bytes]:
    with Image.open(path) as face:
        face = face.convert("RGB")
    side = rng.randrange(120, 201)
    frame = background(rng, (800, 600))
    frame.paste(face.resize((side, side), Image.Resampling.LANCZOS),
                (rng.randrange(800 - side), rng.randrange(600 - side)))  # fmt: skip
    return jpeg(face), jpeg(frame)


def main() -> None:
    from deepfake_detect.evaluation.metrics import alarm_rates
    from deepfake_detect.inference import BUNDLED_DIR, load_detector

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--model", default=None, help="default: the bundled model")
    parser.add_argument("--manifest", type=Path, default=BUNDLED_DIR / "split_manifest.csv")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=0, help="score a seeded sample of N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    records = manifest_records(args.manifest, args.data, args.split)
    rng = random.Random(args.seed)
    if args.limit:
        records = rng.sample(records, min(args.limit, len(records)))
    detector = load_detector(args.model)
    tight, frames = zip(*(framed(r.path, rng) for r in records), strict=True)
    scores = {
        WAYS[0]: detector.score(list(tight)),
        WAYS[1]: detector.score(list(frames)),
        WAYS[2]: detector.score(list(frames), faces="on"),
        WAYS[3]: detector.score(list(frames), faces="auto"),
    }
    labels = np.array([r.label for r in records])
    report = {"images": len(records), "threshold": detector.threshold}
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


if __name__ == "__main__":
    main()
