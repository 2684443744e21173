"""The inference layer: score images with a trained model (`Detector`), the bundled one by
default. Scoring engines (`engines`: ONNX Runtime, the default, and PyTorch), ONNX export and the
benchmark live here; torch is imported only by the torch engine and by exporting."""

from deepfake_detect.inference.detector import (
    BUNDLED_DIR,
    Detector,
    Prediction,
    bundled_model_dir,
    load_detector,
    resolve_model,
)
from deepfake_detect.inference.inputs import expand_paths, scan_inputs

__all__ = [
    "BUNDLED_DIR",
    "Detector",
    "Prediction",
    "bundled_model_dir",
    "expand_paths",
    "load_detector",
    "resolve_model",
    "scan_inputs",
]
