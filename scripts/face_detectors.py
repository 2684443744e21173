"""Choose the face detector, and measure the crop policy, on images made here.

    python scripts/face_detectors.py --data ../shared/data --json faces.json

1. Recall and precision (a detection is a true one when its IoU with a pasted face's box is at
   least 0.5) on synthetic group photos: faces of `--data` pasted on cluttered backgrounds at
   known boxes, one face size per photo, and the time per photo. The face box of a pasted
   FFHQ-aligned image is its region from brows to chin (`FACE_REGION` of the tile), since
   every image of these sources is aligned the same way.
2. The crop policy (`--crop-policy`): the chosen detector on training-like images, which are
   the whole frame the model was trained to see: the median share of the frame the face box
   fills, and where it sits. A face found in a larger photo is cropped so that it fills the crop
   the same way (`CropPolicy` in config.json).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from deepfake_detect.inference.faces import DETECTORS, Face, load_face_detector

# brows to chin, ear to ear, of an FFHQ-aligned crop (x1, y1, x2, y2 as shares of its side)
FACE_REGION = (0.2, 0.2, 0.8, 0.86)
SIZES = (32, 48, 64, 96, 128, 192, 256)  # pasted tile sides; the face is about 0.6 of them
SOURCES = ("faces140k-sample", "faces140k-extra", "headshots-sg2")


def face_files(data: Path) -> list[Path]:
    files = []
    for source in SOURCES:
        for label in ("real", "fake"):
            files += sorted((data / source / label).glob("*"))
    return files


def background(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """Smooth colour, noise and shapes: clutter with edges and blobs, but no face."""
    width, height = size
    base = np.random.default_rng(rng.randrange(2**32)).normal(0, 1, (height // 16, width // 16, 3))
    image = Image.fromarray(np.uint8(np.clip(128 + 50 * base, 0, 255))).resize(
        size, Image.Resampling.BICUBIC
    )
    draw = ImageDraw.Draw(image)
    for _ in range(25):
        x, y = rng.randrange(width), rng.randrange(height)
        w, h = rng.randrange(10, width // 3), rng.randrange(10, height // 3)
        colour = tuple(rng.randrange(256) for _ in range(3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=colour, outline=(0, 0, 0))
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 6, (height, width, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255)
    return Image.fromarray(np.uint8(pixels)).filter(ImageFilter.GaussianBlur(0.6))


def group_photo(files: list[Path], rng: random.Random, side: int, count: int = 4):
    """A 640x480 photo with `count` faces pasted as side x side tiles; their face boxes."""
    canvas = background(rng, (640, 480))
    columns, rows = 640 // max(side, 80), 480 // max(side, 80)
    cells = rng.sample([(c, r) for c in range(columns) for r in range(rows)],
                       min(count, columns * rows))  # fmt: skip
    cell_w, cell_h = 640 // columns, 480 // rows
    boxes = []
    for column, row in cells:
        with Image.open(rng.choice(files)) as tile:
            tile = tile.convert("RGB").resize((side, side), Image.Resampling.LANCZOS)
        x = column * cell_w + rng.randrange(max(1, cell_w - side))
        y = row * cell_h + rng.randrange(max(1, cell_h - side))
        canvas.paste(tile, (x, y))
        x1, y1, x2, y2 = FACE_REGION
        boxes.append((x + x1 * side, y + y1 * side, x + x2 * side, y + y2 * side))
    return canvas, boxes


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(found: list[Face], truth: list[tuple]) -> tuple[int, int]:
    """(true detections, false detections): each true face matched once, greedily by IoU."""
    unmatched, hits = list(truth), 0
    for face in found:
        best = max(unmatched, key=lambda t: iou(face.box, t), default=None)
        if best is not None and iou(face.box, best) >= 0.5:
            unmatched.remove(best)
            hits += 1
    return hits, len(found) - hits


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    z = 1.96
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def measure_detectors(files, names, photos_per_size, seed) -> dict:
    results = {}
    for name in names:
        try:
            detector = load_face_detector(name)
        except ImportError as exc:
            print(f"{name}: skipped ({exc})", file=sys.stderr)
            continue
        rng = random.Random(seed)  # the same photos for every detector
        per_size, seconds, false_total, true_total, faces_total = {}, [], 0, 0, 0
        for side in SIZES:
            hits = faces = 0
            for _ in range(photos_per_size):
                photo, truth = group_photo(files, rng, side)
                start = time.perf_counter()
                found = detector.detect(photo)
                seconds.append(time.perf_counter() - start)
                true, false = match(found, truth)
                hits, faces = hits + true, faces + len(truth)
                false_total += false
            true_total, faces_total = true_total + hits, faces_total + faces
            per_size[round(side * (FACE_REGION[2] - FACE_REGION[0]))] = {
                "recall": hits / faces, "interval": wilson(hits, faces), "faces": faces,
            }  # fmt: skip
        detections = true_total + false_total
        results[name] = {
            "recall": true_total / faces_total,
            "recall_interval": wilson(true_total, faces_total),
            "precision": true_total / detections if detections else 0.0,
            "precision_interval": wilson(true_total, detections),
            "false_detections": false_total,
            "ms_per_photo": 1000 * statistics.median(seconds),
            "by_face_width": per_size,
        }
    return results


def crop_policy(files, name: str, count: int, seed: int) -> dict:
    """Where the detector's box sits in training-like frames (the whole image is the model's
    input): the crop that reproduces that frame around a box found elsewhere."""
    detector = load_face_detector(name)
    shares, shifts, missed = [], [], 0
    for path in random.Random(seed).sample(files, count):
        with Image.open(path) as image:
            image = image.convert("RGB")
        faces = detector.detect(image)
        if not faces:
            missed += 1
            continue
        face = faces[0]
        x1, y1, x2, y2 = face.box
        shares.append(face.side / image.width)
        shifts.append((image.height / 2 - (y1 + y2) / 2) / face.side)
    share = statistics.median(shares)
    return {
        "detector": name, "images": count, "no_face_found": missed,
        "face_share_median": share,
        "face_share_quartiles": statistics.quantiles(shares, n=4),
        "scale": 1 / share, "shift_y": statistics.median(shifts),
    }  # fmt: skip


def markdown(results: dict) -> str:
    widths = sorted({w for r in results.values() for w in r["by_face_width"]})
    lines = [
        "| detector | recall | precision | false detections | ms per 640x480 photo | "
        + " | ".join(f"recall, {w} px faces" for w in widths) + " |",
        "| --- " * (5 + len(widths)) + "|",
    ]
    for name, r in results.items():
        low, high = r["recall_interval"]
        plow, phigh = r["precision_interval"]
        cells = [
            name, f"{r['recall']:.3f} [{low:.3f}, {high:.3f}]",
            f"{r['precision']:.3f} [{plow:.3f}, {phigh:.3f}]", str(r["false_detections"]),
            f"{r['ms_per_photo']:.0f}",
        ] + [f"{r['by_face_width'][w]['recall']:.2f}" for w in widths]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    parser.add_argument("--photos-per-size", type=int, default=12)
    parser.add_argument("--crop-policy", type=int, default=300, metavar="N",
                        help="training-like images to measure the crop policy on (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    files = face_files(args.data)
    if not files:
        raise SystemExit(f"{args.data}: no face images in {', '.join(SOURCES)}")
    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    report = {"detectors": measure_detectors(files, names, args.photos_per_size, args.seed)}
    print(markdown(report["detectors"]))
    if args.crop_policy:
        report["crop_policy"] = crop_policy(files, names[0], args.crop_policy, args.seed)
        print(json.dumps(report["crop_policy"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
