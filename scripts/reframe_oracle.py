"""An oracle for issue 19: would putting a centre-cropped face back at the place and scale it
had (padding the crop to the original canvas, no resampling) let the model catch it again?

On the validation images of the model's split (its split_manifest.csv, the diffusion faces
left out), each is scored clean (JPEG 75), after `evaluate --change crop-80` (the 80% centre
crop, JPEG 75, resized by the model as usual), and that crop padded back to the original size
by repeating the edge pixels, by mirroring, and with mid grey. Prints, at the model's threshold,
the share of fakes caught, of reals called fake, and ROC-AUC.

    python scripts/reframe_oracle.py [--model DIR] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from deepfake_detect.data.transforms import EVERYDAY_CHANGES
from deepfake_detect.errors import DetectorError
from deepfake_detect.inference.detector import load_detector


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def pad_back(image: Image.Image, size: tuple[int, int], mode: str) -> Image.Image:
    """The crop in the middle of a canvas of `size`, the border filled by `mode`."""
    pixels = np.asarray(image)
    height, width = pixels.shape[:2]
    top, left = (size[1] - height) // 2, (size[0] - width) // 2
    widths = ((top, size[1] - height - top), (left, size[0] - width - left), (0, 0))
    if mode == "grey":
        return Image.fromarray(np.pad(pixels, widths, constant_values=128))
    return Image.fromarray(np.pad(pixels, widths, mode=mode))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a run folder (default: the bundled model)")
    parser.add_argument("--data", default="../shared/data")
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        raise SystemExit(f"error: {args.data}: not a folder")
    try:
        detector = load_detector(args.model)
    except DetectorError as exc:
        raise SystemExit(f"error: {exc}") from None
    manifest = Path(args.model or Path(__file__).parents[1] / "src/deepfake_detect/bundled")
    manifest /= "split_manifest.csv"
    if not manifest.is_file():
        raise SystemExit(f"error: {manifest}: no split manifest beside the model")
    with open(manifest, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "valid"]
    rows = [r for r in rows if r["source"] != "diffusion-faces"]
    missing = [r["path"] for r in rows if not (Path(args.data) / r["path"]).is_file()]
    if missing:
        count, example = len(missing), missing[0]
        raise SystemExit(f"error: {count} validation images not in {args.data}, e.g. {example}")
    crop, quality = EVERYDAY_CHANGES["crop-80"]
    variants: dict[str, list[Image.Image]] = {
        k: [] for k in ("clean", "crop-80", "edge", "reflect", "grey")
    }
    labels = []
    for row in rows:
        image = Image.open(Path(args.data) / row["path"]).convert("RGB")
        labels.append(row["label"] == "fake")
        variants["clean"].append(jpeg(image, 75))
        cropped = jpeg(crop(image), quality)
        variants["crop-80"].append(cropped)
        for mode in ("edge", "reflect", "grey"):
            variants[mode].append(pad_back(cropped, image.size, mode))
    fake = np.array(labels)
    threshold = detector.threshold
    print(f"{len(rows)} validation images, threshold {threshold:.4f}")
    for name, images in variants.items():
        scores = np.concatenate([
            detector.score_arrays(np.stack([detector.preprocess(x) for x in images[i : i + 64]]))
            for i in range(0, len(images), 64)
        ])  # fmt: skip
        print(
            f"{name:8} fakes caught {np.mean(scores[fake] >= threshold):.3f}  "
            f"reals called fake {np.mean(scores[~fake] >= threshold):.3f}  "
            f"ROC-AUC {roc_auc_score(fake, scores):.4f}"
        )


if __name__ == "__main__":
    main()
