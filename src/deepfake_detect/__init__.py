"""Tell real face photographs from GAN-generated ones.

Labels everywhere: real = 0, fake = 1, and a score is P(fake).

    >>> from deepfake_detect import load_detector
    >>> detector = load_detector()            # the bundled model, or load_detector("runs/x")
    >>> detector.score(["face.jpg"])[0].score

torch is imported only when a model is loaded, so `import deepfake_detect` stays light.
"""

from typing import Any

from deepfake_detect.version import __version__

__all__ = ["Detector", "Prediction", "load_detector", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Detector", "Prediction", "load_detector"):
        from deepfake_detect import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'deepfake_detect' has no attribute {name!r}")
