"""The training layer: two-phase training of a detector over a run folder (resumable), and
ensembles of trained runs. It uses every layer below it and nothing above uses it but the CLI.

    >>> from deepfake_detect.training import TrainOptions, train
    >>> train(TrainOptions(data=["data/"], output="runs/x", backbone="tf_efficientnet_lite0"))
"""

from deepfake_detect.training.options import TrainOptions
from deepfake_detect.training.trainer import Trainer, TrainResult, train

__all__ = ["TrainOptions", "TrainResult", "Trainer", "train"]
