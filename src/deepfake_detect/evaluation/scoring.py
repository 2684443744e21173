"""Scoring a network over a loader, and choosing its temperature and threshold on validation.

Only validation images decide the temperature and the threshold: the test split never reaches
`calibrate_on_validation`. Training (each epoch's validation, the final calibration) and
ensembling use these; the `Detector` applies what they chose.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepfake_detect.data.loaders import ImageDataset, make_loader
from deepfake_detect.devices import autocast, to_device
from deepfake_detect.evaluation.metrics import (
    THRESHOLD_RULES,
    compute_metrics,
    expected_calibration_error,
    fit_temperature,
    select_threshold,
)
from deepfake_detect.progress import progress_bar


@torch.no_grad()
def predict_logits(module, loader, device, desc="predict", progress=True):
    """Logits and labels for every item of the loader, in order."""
    module.eval()
    logits, labels = [], []
    with progress_bar(len(loader.sampler), desc, progress) as bar:
        for x, y in loader:
            with autocast(device):
                logits.append(module(to_device(x, device)).reshape(-1).float().cpu())
            labels.append(y.float())
            bar.update(len(y))
    return torch.cat(logits), torch.cat(labels)


def validation_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float | None]:
    from sklearn.metrics import roc_auc_score

    loss = nn.functional.binary_cross_entropy_with_logits(logits, labels).item()
    accuracy = ((logits >= 0) == (labels >= 0.5)).float().mean().item()
    two_classes = labels.min() != labels.max()
    auc = float(roc_auc_score(labels.numpy(), logits.numpy())) if two_classes else None
    return {"val_loss": loss, "val_accuracy": accuracy, "val_auc": auc}


def calibrate_on_validation(
    module,
    records,
    transform,
    *,
    seed,
    batch_size,
    workers,
    device,
    progress,
    calibrate=True,
    threshold_rule=THRESHOLD_RULES[0],
) -> tuple[float, float, dict[str, Any]]:
    """Score the validation images; fit the temperature that makes their P(fake) calibrated
    (1.0 when `calibrate` is False), then choose the threshold on the calibrated scores by
    `threshold_rule` (`select_threshold`). Returns (temperature, threshold, metrics with
    bootstrap intervals, which name the rule).

    Only validation images decide either number: the test split never reaches this function.
    """
    dataset = ImageDataset(records, transform, seed=seed)
    loader = make_loader(dataset, batch_size, workers)
    logits, labels = predict_logits(module, loader, device, "valid", progress)
    return calibration_from_logits(
        logits, labels, calibrate=calibrate, threshold_rule=threshold_rule
    )


def calibration_from_logits(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    calibrate: bool = True,
    threshold_rule: str = THRESHOLD_RULES[0],
) -> tuple[float, float, dict[str, Any]]:
    """`calibrate_on_validation` from the validation logits (scored by the caller: under
    torchrun, shared out over the ranks)."""
    labels_np = labels.numpy().astype(int)
    temperature = fit_temperature(labels_np, logits.numpy()) if calibrate else 1.0
    scores = torch.sigmoid(logits.double() / temperature).numpy()  # as Detector scores them
    threshold = select_threshold(labels_np, scores, threshold_rule)
    metrics = compute_metrics(labels_np, scores, threshold, n_bootstrap=200)
    metrics["threshold_rule"] = threshold_rule
    if calibrate:
        raw = torch.sigmoid(logits.double()).numpy()
        metrics["ece_before_calibration"] = expected_calibration_error(labels_np, raw)
    return temperature, threshold, metrics
