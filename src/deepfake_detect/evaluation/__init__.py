"""The evaluation layer: metrics with intervals, calibration (temperature and threshold chosen
on validation), plots, and evaluation runs of a model over a labelled split.

`evaluate` is imported lazily, so that `deepfake_detect.evaluation.metrics` stays light."""

from typing import Any

__all__ = ["evaluate"]


def __getattr__(name: str) -> Any:
    if name == "evaluate":
        from deepfake_detect.evaluation.runs import evaluate

        return evaluate
    raise AttributeError(f"module 'deepfake_detect.evaluation' has no attribute {name!r}")
