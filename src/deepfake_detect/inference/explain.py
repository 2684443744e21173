"""Grad-CAM heat-maps: which regions of an image pushed the score towards "fake".

The map is Grad-CAM (Selvaraju et al., 2017) on the backbone's last feature map: each
channel is weighted by the mean gradient of the fake logit with respect to it, the weighted sum
is kept where positive, enlarged to the image and scaled to 0-1. It shows where the network
looked for its evidence; it is not a proof of manipulation, and a real photo has a map too.

Explanations need the PyTorch network (`load_detector(engine="torch")`): ONNX graphs carry no
gradients. This module imports torch, so only code that explains imports it.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from deepfake_detect.data.images import ImageSource, load_image, preprocess
from deepfake_detect.errors import ModelError
from deepfake_detect.inference.detector import Detector, load_detector

OVERLAY_MAX_SIDE = 1024


@dataclass
class Explanation:
    """The score of one image and its heat-map at the image's own size (after EXIF rotation).

    `heatmap` is float32 in 0-1, 1 where the evidence for "fake" was strongest; a map of zeros
    means no region raised the fake logit (the positive part of the sum was empty).
    """

    score: float
    label: str
    heatmap: np.ndarray
    image: Image.Image

    def overlay(self, alpha: float = 0.45, max_side: int = OVERLAY_MAX_SIDE) -> Image.Image:
        """The heat-map in colour (blue: none, red: most) blended over the image."""
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be within 0-1, got {alpha}")
        image = self.image
        scale = min(1.0, max_side / max(image.size))
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        base = image.resize(size, Image.Resampling.BILINEAR) if scale < 1 else image
        heat = Image.fromarray((self.heatmap * 255).astype(np.uint8)).resize(
            size, Image.Resampling.BILINEAR
        )
        coloured = Image.fromarray(_colormap(np.asarray(heat)))
        # the map is blended in proportion to its strength, so cold regions keep the photo
        weight = (np.asarray(heat, np.float32) / 255 * alpha)[..., None]
        mixed = np.asarray(base, np.float32) * (1 - weight) + np.asarray(coloured) * weight
        return Image.fromarray(np.clip(mixed, 0, 255).astype(np.uint8))

    def overlay_png(self, alpha: float = 0.45, max_side: int = OVERLAY_MAX_SIDE) -> bytes:
        buffer = io.BytesIO()
        self.overlay(alpha, max_side).save(buffer, "PNG", optimize=False)
        return buffer.getvalue()


class Explainer:
    """Grad-CAM for a detector loaded with the torch engine; safe to call from threads."""

    def __init__(self, detector: Detector):
        net = detector.net  # AttributeError for the onnx engine, with what to do instead
        self.detector = detector
        self.net = net.eval()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model=None, device: str = "auto") -> Explainer:
        return cls(load_detector(model, device, engine="torch"))

    def explain(self, source: ImageSource) -> Explanation:
        c = self.detector.config
        image = load_image(source)
        array = preprocess(image, c.image_size, c.mean, c.std, c.interpolation)
        x = torch.from_numpy(array[None]).to(self.detector.device)
        with self._lock:
            logit, cam = self._grad_cam(x)
        score = float(1.0 / (1.0 + np.exp(-logit / c.temperature)))
        label = "fake" if score >= self.detector.threshold else "real"
        heatmap = _to_image_size(cam, image.size)
        return Explanation(score, label, heatmap, image)

    def _grad_cam(self, x: torch.Tensor) -> tuple[float, torch.Tensor]:
        """The fake logit and the (H, W) map at the input's size, unnormalised."""
        with torch.enable_grad():
            # the input asks for gradients, so the graph exists even with frozen weights;
            # autograd.grad fills no parameter's .grad
            features, logit = _features_and_logit(self.net, x.requires_grad_(True))
            grads = torch.autograd.grad(logit.sum(), features)
        cam = torch.zeros(x.shape[-2:], device=x.device)
        for feature, grad in zip(features, grads, strict=True):
            weights = grad.mean(dim=(2, 3), keepdim=True)
            member = (weights * feature).sum(dim=1, keepdim=True).detach()
            cam += F.interpolate(member, size=x.shape[-2:], mode="bilinear",
                                 align_corners=False)[0, 0]  # fmt: skip
        return float(logit.detach().double().item()), cam.clamp(min=0).cpu()


def _features_and_logit(net, x: torch.Tensor):
    """The last feature map of each network (one, or an ensemble's members) and the logit the
    network computes from them, exactly as its forward() does."""
    from deepfake_detect.models.ensemble import EnsembleNet

    if isinstance(net, EnsembleNet):
        maps, logits = [], []
        for member, temperature in zip(net.members, net.temperatures, strict=True):
            (feature,), logit = _features_and_logit(member, x)
            maps.append(feature)
            logits.append(logit / temperature)
        return maps, torch.stack(logits).mean(0)
    backbone = getattr(net, "backbone", None)
    if backbone is None or not hasattr(backbone, "forward_head"):
        raise ModelError(f"cannot explain a {type(net).__name__}: Grad-CAM needs a timm backbone")
    feature = backbone.forward_features(x)
    logit = net.head(backbone.forward_head(feature, pre_logits=True)).squeeze(1)
    return [feature], logit


def _to_image_size(cam: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """The map resized to (width, height) and scaled to 0-1 (zeros stay zeros)."""
    resized = F.interpolate(cam[None, None], size=(size[1], size[0]), mode="bilinear",
                            align_corners=False)[0, 0].numpy()  # fmt: skip
    peak = float(resized.max())
    out = resized / peak if peak > 0 else np.zeros_like(resized)
    return np.clip(out, 0, 1).astype(np.float32)


def _colormap(values: np.ndarray) -> np.ndarray:
    """uint8 (H, W) to RGB with matplotlib's 'jet' (no pyplot state involved)."""
    from matplotlib import colormaps

    return (colormaps["jet"](values)[..., :3] * 255).astype(np.uint8)
