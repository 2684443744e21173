"""Finding faces in photos, and cropping each the way faces fill the model's training images.

One small interface, `FaceDetector.detect(image) -> list[Face]`, with two implementations:

- `mtcnn` (the default): the three-stage MTCNN of Zhang et al. (2016), with the weights of
  facenet-pytorch (MIT), shipped in the package as ONNX files (`face_models/`, made by
  `scripts/export_mtcnn_onnx.py`) and run on ONNX Runtime: no torch, nothing to download.
- `opencv`: OpenCV's Haar cascade for frontal faces (`pip install 'opencv-python-headless<5'`).

`scripts/face_detectors.py` measures both on synthetic group photos (faces of `../shared/data`
pasted at known boxes); the README's table comes from it. Boxes are in pixels of the image as
loaded (EXIF orientation applied): x1, y1, x2, y2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

FACE_MODELS = Path(__file__).parent / "face_models"
DETECTORS = ("mtcnn", "opencv")
DEFAULT_DETECTOR = "mtcnn"


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2, in pixels
    confidence: float
    # the image's (width, height): a detector's box may reach past its edges (a chin cut off
    # by the frame), and the box reported is clipped to them; crops use the box as found
    bounds: tuple[int, int] | None = None

    @property
    def side(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(x2 - x1, y2 - y1)

    def rounded(self) -> list[int]:
        """The box in whole pixels, within the image when its size is known."""
        x1, y1, x2, y2 = (round(v) for v in self.box)
        if self.bounds is None:
            return [x1, y1, x2, y2]
        width, height = self.bounds
        return [min(max(x1, 0), width), min(max(y1, 0), height),
                min(max(x2, 0), width), min(max(y2, 0), height)]  # fmt: skip


class FaceDetector(Protocol):
    name: str

    def detect(self, image: Image.Image) -> list[Face]:
        """Faces in an RGB image, most confident first."""
        ...


@dataclass(frozen=True)
class CropPolicy:
    """How a face box becomes the model's input: a square of `scale` times the box's longer
    side, centred `shift_y` box sides below the box's centre (negative: above), moved inside
    the image where it fits. Measured by running the detector on training images
    (`scripts/face_detectors.py --crop-policy`) and stored in the model's config.json."""

    # measured on 2026-12-03 (scripts/face_detectors.py --crop-policy 300): in 300 training
    # images MTCNN's box filled 0.744 of the frame (quartiles 0.704-0.774), its centre 0.066
    # box sides below the frame's
    detector: str = DEFAULT_DETECTOR
    scale: float = 1.34
    shift_y: float = -0.066
    min_face: int = 20  # pixels: smaller faces are not looked for
    # --faces auto crops when the largest face fills less than this share of the shorter side:
    # well under the 0.70 that faces fill in all but a quarter of the training images
    auto_share: float = 0.5

    def looks_for_faces(self, size: tuple[int, int], image_size: int) -> bool:
        """Whether --faces auto looks for faces in an image of `size` (width, height). An image
        under `image_size / (auto_share * scale)` on both sides (382 px for a 256 px model),
        where every face auto would crop makes a crop smaller than the model's input, is most
        likely a face crop already, as every training image is: it is scored whole, at the
        speed of --faces off. A wider one (a 640x360 photo, a video frame) is searched."""
        return max(size) * self.auto_share * self.scale >= image_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> CropPolicy:
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


def largest(faces: list[Face]) -> Face | None:
    """The face with the longest box side (None: no face)."""
    return max(faces, key=lambda f: f.side, default=None)


def crop_box(face: Face, size: tuple[int, int], policy: CropPolicy) -> tuple[int, int, int, int]:
    """The square crop around `face` in an image of `size` (width, height)."""
    width, height = size
    x1, y1, x2, y2 = face.box
    side = min(face.side * policy.scale, width, height)
    cx = (x1 + x2) / 2
    cy = (y1 + y2) / 2 + policy.shift_y * face.side
    left = min(max(cx - side / 2, 0.0), width - side)
    top = min(max(cy - side / 2, 0.0), height - side)
    return round(left), round(top), round(left + side), round(top + side)


def crop_face(image: Image.Image, face: Face, policy: CropPolicy) -> Image.Image:
    return image.crop(crop_box(face, image.size, policy))


def load_face_detector(name: str = DEFAULT_DETECTOR, *, min_face: int = 20) -> FaceDetector:
    if name == "mtcnn":
        return MtcnnDetector(min_face=min_face)
    if name == "opencv":
        return HaarDetector(min_face=min_face)
    raise ValueError(f"--face-detector must be one of {', '.join(DETECTORS)}, not {name!r}")


class MtcnnDetector:
    """MTCNN on ONNX Runtime: a proposal network over an image pyramid, then two networks that
    refine and re-score the candidates (thresholds 0.6, 0.7, 0.7, as its authors set them)."""

    name = "mtcnn"
    thresholds = (0.6, 0.7, 0.7)
    factor = 0.709
    max_side = 1600  # larger photos are searched at this size (faces under min_face there are lost)

    def __init__(self, min_face: int = 20, threads: int | None = None) -> None:
        self.min_face = min_face
        self.pnet, self.rnet, self.onet = (
            _session(FACE_MODELS / f"mtcnn-{n}.onnx", threads) for n in ("pnet", "rnet", "onet")
        )

    def detect(self, image: Image.Image) -> list[Face]:
        image = image.convert("RGB")
        shrink = min(1.0, self.max_side / max(image.size))
        if shrink < 1.0:
            size = (max(1, round(image.width * shrink)), max(1, round(image.height * shrink)))
            image = image.resize(size, Image.Resampling.BOX)
        pixels = np.asarray(image)
        boxes = self._propose(image)
        if len(boxes):
            boxes = self._refine(pixels, boxes)
        if len(boxes):
            boxes = self._output(pixels, boxes)
        order = np.argsort(-boxes[:, 4]) if len(boxes) else []
        return [
            Face(tuple(float(v) / shrink for v in boxes[i, :4]), float(boxes[i, 4])) for i in order
        ]

    def _propose(self, image: Image.Image) -> np.ndarray:
        width, height = image.size
        m = 12.0 / self.min_face
        smallest = min(width, height) * m
        scale, found = m, []
        while smallest >= 12:
            size = (int(width * scale + 1), int(height * scale + 1))
            data = _normalise(np.asarray(image.resize(size, Image.Resampling.BOX)))
            regression, probability = self.pnet.run(None, {"image": data[None]})
            boxes = _proposals(regression[0], probability[0, 1], scale, self.thresholds[0])
            found.append(boxes[_nms(boxes, 0.5)])
            scale *= self.factor
            smallest *= self.factor
        boxes = np.concatenate(found) if found else np.zeros((0, 9))
        if not len(boxes):
            return np.zeros((0, 5))
        boxes = boxes[_nms(boxes, 0.7)]
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        shifted = boxes[:, :4] + boxes[:, 5:9] * np.stack([w, h, w, h], axis=1)
        return _square(np.column_stack([shifted, boxes[:, 4]]))

    def _refine(self, pixels: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        regression, probability = self.rnet.run(None, {"image": _patches(pixels, boxes, 24)})
        keep = probability[:, 1] > self.thresholds[1]
        boxes = np.column_stack([boxes[keep, :4], probability[keep, 1]])
        regression = regression[keep]
        pick = _nms(boxes, 0.7)
        return _square(_regress(boxes[pick], regression[pick]))

    def _output(self, pixels: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        regression, _landmarks, probability = self.onet.run(
            None, {"image": _patches(pixels, boxes, 48)}
        )
        keep = probability[:, 1] > self.thresholds[2]
        boxes = np.column_stack([boxes[keep, :4], probability[keep, 1]])
        boxes = _regress(boxes, regression[keep])
        return boxes[_nms(boxes, 0.7, by_min=True)]


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (Viola-Jones). Its confidence is its level weight
    squashed to 0-1; it finds frontal faces only."""

    name = "opencv"

    def __init__(self, min_face: int = 20) -> None:
        try:
            import cv2
        except ImportError:
            raise ImportError(
                "--face-detector opencv needs OpenCV: pip install 'opencv-python-headless<5'"
            ) from None
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(str(path))
        self.min_face = min_face

    def detect(self, image: Image.Image) -> list[Face]:
        gray = np.asarray(image.convert("L"))
        boxes, _levels, weights = self.cascade.detectMultiScale3(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(self.min_face, self.min_face),
            outputRejectLevels=True,
        )  # fmt: skip
        faces = [
            Face((float(x), float(y), float(x + w), float(y + h)), float(1 / (1 + np.exp(-s))))
            for (x, y, w, h), s in zip(boxes, np.ravel(weights), strict=True)
        ]
        return sorted(faces, key=lambda f: -f.confidence)


@cache
def _session(path: Path, threads: int | None):
    import onnxruntime as ort

    from deepfake_detect.inference.engines import session_options

    return ort.InferenceSession(
        str(path), session_options(threads), providers=["CPUExecutionProvider"]
    )


def _normalise(pixels: np.ndarray) -> np.ndarray:
    """HWC uint8 to CHW float32 in about [-1, 1], as MTCNN was trained."""
    return ((pixels.astype(np.float32) - 127.5) * 0.0078125).transpose(2, 0, 1)


def _proposals(regression, probability, scale, threshold) -> np.ndarray:
    """PNet's 12 px windows (stride 2) over `threshold`, in image pixels: x1 y1 x2 y2 score
    and four box offsets."""
    rows, cols = np.nonzero(probability >= threshold)
    if not len(rows):
        return np.zeros((0, 9))
    start = np.stack([cols, rows], axis=1).astype(np.float64)
    q1 = np.floor((2 * start + 1) / scale)
    q2 = np.floor((2 * start + 12) / scale)
    offsets = regression[:, rows, cols].T
    return np.column_stack([q1, q2, probability[rows, cols], offsets])


def _square(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2:4] = out[:, 0:2] + side[:, None]
    return out


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, :4] = boxes[:, :4] + offsets[:, :4] * np.stack([w, h, w, h], axis=1)
    return out


def _patches(pixels: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Each box cut out of the image (clipped at its edges) and resized to size x size."""
    height, width = pixels.shape[:2]
    out = np.empty((len(boxes), 3, size, size), dtype=np.float32)
    for i, (x1, y1, x2, y2) in enumerate(boxes[:, :4].astype(int)):
        left, top = max(x1, 0), max(y1, 0)
        right, bottom = min(max(x2, left + 1), width), min(max(y2, top + 1), height)
        patch = Image.fromarray(pixels[top:bottom, left:right])
        out[i] = _normalise(np.asarray(patch.resize((size, size), Image.Resampling.BOX)))
    return out


def _nms(boxes: np.ndarray, threshold: float, by_min: bool = False) -> np.ndarray:
    """Greedy non-maximum suppression by IoU (or by intersection over the smaller box)."""
    if not len(boxes):
        return np.zeros(0, dtype=int)
    x1, y1, x2, y2, score = (boxes[:, i] for i in range(5))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(score)[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]) + 1)
        inter = w * h
        if by_min:
            overlap = inter / np.minimum(area[i], area[order[1:]])
        else:
            overlap = inter / (area[i] + area[order[1:]] - inter)
        order = order[1:][overlap <= threshold]
    return np.array(keep, dtype=int)
