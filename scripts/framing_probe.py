"""How much of the picture the face fills, per source and class, and what a model says of one
photo as the window around its face widens.

Every real training face is an aligned FFHQ crop, while the diffusion faces (all fake) are
portraits with more of the picture around the face: if the share of the picture that the face
fills tells the classes apart, a network can learn the framing instead of the face. Part one
runs the face detector that `--faces` uses (MTCNN) on a seeded sample of the manifest's images
and prints, per source and class, the face box's side over the image's shorter side (median,
quartiles, lowest and highest tenth). Part two takes a photo (`--photo`, the README's example
by default), finds its largest face, and scores with the model square windows around that face
as the crop policy places them, at widening scales (1.34 is the policy's own, the training
framing), then centred windows of the whole photo at shrinking sides: which framing flips the
answer.

    python scripts/framing_probe.py [--model DIR] [--split train] [--limit 400] [--photo P]
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from everyday_changes import reported, sample_arguments, sampled  # noqa: E402

SCALES = (1.34, 1.8, 2.4, 3.2)
WINDOWS = (1.0, 0.875, 0.75)  # centred windows, as shares of the photo's shorter side


def largest_face(image: Image.Image, detector):
    """The largest face the detector finds (None: no face found)."""
    from deepfake_detect.inference.faces import largest

    return largest(detector.detect(image))


def face_fill(image: Image.Image, detector) -> float | None:
    """The largest face's box side over the image's shorter side (None: no face found)."""
    face = largest_face(image, detector)
    return None if face is None else face.side / min(image.size)


def fills_by_group(records, detector) -> dict[str, dict]:
    from deepfake_detect.data.datasets import LABEL_NAMES

    groups: dict[str, list] = {}
    for record in records:
        with Image.open(record.path) as image:
            fill = face_fill(image.convert("RGB"), detector)
        groups.setdefault(f"{record.source} {LABEL_NAMES[record.label]}", []).append(fill)
    report = {}
    for name, values in sorted(groups.items()):
        found = np.array([v for v in values if v is not None])
        quartiles = np.percentile(found, [25, 50, 75]).tolist() if len(found) else [None] * 3
        tenths = np.percentile(found, [10, 90]).tolist() if len(found) else [None] * 2
        report[name] = {"images": len(values), "no_face": len(values) - len(found),
                        "quartiles": quartiles, "tenths": tenths}  # fmt: skip
    return report


def windows(photo: Image.Image, face, policy) -> dict[str, Image.Image]:
    """Crops of `photo` by name: around `face` at each of SCALES, then centred on the photo."""
    from deepfake_detect.inference.faces import crop_box

    crops = {}
    for scale in SCALES:
        box = crop_box(face, photo.size, replace(policy, scale=scale))
        crops[f"face x{scale:g} (fill {face.side / (box[2] - box[0]):.2f})"] = photo.crop(box)
    shorter = min(photo.size)
    for share in WINDOWS:
        side = round(shorter * share)
        left, top = (photo.width - side) // 2, (photo.height - side) // 2
        name = "whole photo" if side == shorter == max(photo.size) else f"centre {side} px"
        crops[f"{name} (fill {face.side / side:.2f})"] = photo.crop(
            (left, top, left + side, top + side)
        )
    return crops


def run(argv: list[str] | None) -> int:
    from deepfake_detect.inference import load_detector
    from deepfake_detect.inference.faces import load_face_detector

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sample_arguments(parser, split="train", limit=400)
    parser.add_argument("--photo", type=Path, default=Path("examples/astronaut.png"))
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    with Image.open(args.photo) as image:  # a missing or unreadable photo fails first
        photo = image.convert("RGB")
    detector = load_detector(args.model)
    faces = load_face_detector(detector.crop_policy.detector)
    records = sampled(args, random.Random(args.seed))
    report = {"split": args.split, "fills": fills_by_group(records, faces)}
    print(f"face fill (largest face's side / shorter side), {args.split} split, MTCNN")
    print("| source and class | images | no face | median | quartiles | lowest and highest tenth |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, row in report["fills"].items():
        low, mid, high = (f"{v:.3f}" if v is not None else "-" for v in row["quartiles"])
        first, last = (f"{v:.3f}" if v is not None else "-" for v in row["tenths"])
        print(f"| {name} | {row['images']} | {row['no_face']} | {mid} | {low}-{high} "
              f"| {first}, {last} |")  # fmt: skip
    face = largest_face(photo, faces)
    if face is None:
        raise ValueError(f"{args.photo}: no face found in the photo")
    crops = windows(photo, face, detector.crop_policy)
    scores = [p.score for p in detector.score(list(crops.values()), faces="off")]
    report["photo"] = {"path": str(args.photo), "size": list(photo.size),
                       "face_box": face.rounded(), "threshold": detector.threshold,
                       "windows": dict(zip(crops, scores, strict=True))}  # fmt: skip
    print(f"\n{args.photo} ({photo.width}x{photo.height}, largest face x1 y1 x2 y2 "
          f"{face.rounded()}), threshold {detector.threshold:.4f}")  # fmt: skip
    print("| window | side | P(fake) | label |")
    print("| --- | --- | --- | --- |")
    for (name, crop), score in zip(crops.items(), scores, strict=True):
        label = "fake" if score >= detector.threshold else "real"
        print(f"| {name} | {crop.width} px | {score:.3f} | {label} |")
    if args.json:
        from deepfake_detect.files import atomic_write_json

        atomic_write_json(args.json, report)
    return 0


def main(argv: list[str] | None = None) -> int:
    return reported(run, argv)


if __name__ == "__main__":
    sys.exit(main())
