"""The inference layer: score images with a trained model (`Detector`), the bundled one by
default. Scoring engines (PyTorch today) live here; torch is imported only when a model loads."""

from deepfake_detect.inference.detector import (
    BUNDLED_DIR,
    Detector,
    Prediction,
    bundled_model_dir,
    expand_paths,
    load_detector,
    resolve_model,
    scan_inputs,
)

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
