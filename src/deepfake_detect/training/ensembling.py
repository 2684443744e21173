"""Building an ensemble: several trained runs as one model folder, with one temperature and
threshold chosen on their shared validation split.

Members trained on the same split with different recipes make different mistakes (one model may be
strong on one source and weak on another); averaging their logits keeps what each does well. The
ensemble is an ordinary model folder (config.json + model.safetensors) that every command loads.

    deepfake-detect ensemble --model runs/a --model runs/b --output runs/ab

`--combine weights` averages the members' weights instead (a uniform "model soup", Wortsman et al.
2022): one network, so the speed of one member. It only makes sense for members fine-tuned from
the same starting weights (here: the same seed, data and frozen phase), which stay in one basin
of the loss; networks trained apart average to noise, so the validation metrics printed matter.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepfake_detect.data.datasets import (
    SPLIT_NAME,
    ImageRecord,
    index_dataset,
    read_split_csv,
    select,
    write_split_csv,
)
from deepfake_detect.data.prepare import check_images
from deepfake_detect.data.transforms import reencode_steps, validation_transform
from deepfake_detect.devices import resolve_device
from deepfake_detect.errors import DataError, ModelError
from deepfake_detect.evaluation.scoring import calibrate_on_validation
from deepfake_detect.inference.detector import resolve_model
from deepfake_detect.models.checkpoint import load_model_weights, save_model
from deepfake_detect.models.config import (
    CONFIG_NAME,
    ENSEMBLE_FORMAT_VERSION,
    WEIGHTS_NAME,
    ModelConfig,
    read_config,
)
from deepfake_detect.models.ensemble import (
    COMBINES,
    ENSEMBLE_BACKBONE,
    MEMBER_FIELDS,
    NETWORK_FIELDS,
    SHARED_FIELDS,
    EnsembleNet,
    average_weights,
    check_members,
    check_same_network,
)
from deepfake_detect.models.loading import model_from_config


def recorded_split(path: Path, config: ModelConfig) -> list[ImageRecord]:
    """A run's split: its split.csv, or the data's own (a Kaggle train/valid/test layout)."""
    if (path / SPLIT_NAME).is_file():
        return read_split_csv(path / SPLIT_NAME)
    data = training_data(path, config)
    records = index_dataset(data) if data else []
    if not records or any(r.split is None for r in records):
        raise DataError(
            f"{path}: no {SPLIT_NAME} and no split of its own in its training data: the "
            "ensemble's threshold is chosen on the members' validation split"
        )
    return records


def training_data(path: Path, config: ModelConfig) -> list[str]:
    """The run's --data folders as given: its options.json holds them in full (config.json
    keeps no absolute path of the machine, since a model travels)."""
    options = path / "options.json"
    if options.is_file():
        try:
            return list(json.loads(options.read_text()).get("data") or [])
        except (OSError, ValueError):
            pass  # an unreadable options.json: fall back on what config.json recorded
    return list(config.training.get("data") or [])


def shared_split(configs: Sequence[ModelConfig], dirs: Sequence[Path]) -> list[ImageRecord]:
    """The members' common split; refused when any member trained on another one."""
    splits = [recorded_split(d, c) for c, d in zip(configs, dirs, strict=True)]
    keys = [{(r.path.resolve(), r.split) for r in records} for records in splits]
    for path, other in zip(dirs[1:], keys[1:], strict=True):
        if other != keys[0]:
            raise DataError(
                f"{path}: trained on another split than {dirs[0]}: the ensemble's validation "
                "images would be training images of a member"
            )
    if {r.label for r in select(splits[0], "valid")} != {0, 1}:
        raise DataError(f"{dirs[0]}: the validation split needs both real and fake images")
    return splits[0]


def run_facts(path: Path) -> dict[str, Any]:
    """What the model card tells of a member's run (epochs, time), kept in config.json."""
    try:
        state = json.loads((path / "state.json").read_text())
        return {
            "epochs_run": len(state["history"]),
            "training_seconds": round(sum(t["seconds"] for t in state["timings"]), 1),
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def check_output(output: Path) -> None:
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise DataError(f"{output}: exists and is not an empty folder")


def build_ensemble(
    model_dirs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    half: bool = True,
    combine: str = "logits",
    batch_size: int = 32,
    workers: int = 2,
    device: str = "auto",
    progress: bool = False,
) -> ModelConfig:
    """Combine trained run folders into one model folder at output; returns its config.

    The threshold is chosen on the members' shared validation split, with the images re-encoded
    as in training. With half=True the weights are stored as float16 (half the size; they are
    computed in float32 when loaded). combine="weights" averages the members' weights into one
    network of their common architecture (see the module's docstring).
    """
    if batch_size < 1 or workers < 0:
        raise ValueError("--batch-size must be at least 1 and --workers at least 0")
    if combine not in COMBINES:
        raise ValueError(f"--combine must be one of {', '.join(COMBINES)}")
    dirs = [resolve_model(d) for d in model_dirs]
    output = Path(output)
    check_output(output)
    configs = [read_config(d) for d in dirs]
    check_members(configs, dirs)
    if combine == "weights":
        check_same_network(configs, dirs)
    split = shared_split(configs, dirs)
    valid = select(split, "valid")
    check_images(valid, progress)  # a bad file stops here, with its path, not in a worker
    torch_device = resolve_device(device)
    net, config = combined_network(configs, dirs, combine, output.resolve().name)
    net = net.to(torch_device).eval()
    state = stored_weights(net, half)
    first = configs[0]
    transform = validation_transform(first, reencode_steps(first.training.get("reencode")))
    config.temperature, config.threshold, config.metrics = calibrate_on_validation(
        net, valid, transform, seed=int(first.training.get("seed", 0)), batch_size=batch_size,
        workers=workers, device=torch_device, progress=progress,
    )  # fmt: skip
    config.metrics["selected_by"] = "each member's own validation choice"
    write_model_folder(output, split, state, config)
    return config


def combined_network(
    configs: Sequence[ModelConfig], dirs: Sequence[Path], combine: str, name: str
) -> tuple[nn.Module, ModelConfig]:
    """The members as one network (their mean logit, or their mean weights) and its config,
    still without temperature, threshold or metrics."""
    pairs = list(zip(configs, dirs, strict=True))
    first = configs[0]
    described = [
        {
            **{k: getattr(c, k) for k in MEMBER_FIELDS},
            "run": str(d.resolve()),
            **run_facts(d),
            "training": c.training,
            "metrics": c.metrics,
        }
        for c, d in pairs
    ]
    common = {
        **{field: getattr(first, field) for field in SHARED_FIELDS},
        "name": name,
        "version": time.strftime("%Y.%m.%d", time.gmtime()),
    }
    training = {
        "threshold": "temperature and threshold fitted on the members' validation split, "
        "re-encoded as the first member's training images were",
        "members": [str(d.resolve()) for d in dirs],
    }
    if combine == "weights":
        state = average_weights([load_model_weights(d, c) for c, d in pairs], dirs)
        network = {f: getattr(first, f) for f in NETWORK_FIELDS}
        config = ModelConfig(
            **network, **common,
            training={"combine": "mean of the members' weights", **training,
                      "averaged": described, "reencode": first.training.get("reencode"),
                      "seed": first.training.get("seed", 0)},
        )  # fmt: skip
        return model_from_config(config, state), config
    members = [model_from_config(c, load_model_weights(d, c)) for c, d in pairs]
    config = ModelConfig(
        backbone=ENSEMBLE_BACKBONE,
        head="mean-logit",
        **common,
        training={"combine": "mean of the members' logits", **training},
        members=described,
        format_version=ENSEMBLE_FORMAT_VERSION,
    )
    return EnsembleNet(members, [c.temperature for c in configs]), config


def stored_weights(net: nn.Module, half: bool) -> dict[str, torch.Tensor]:
    """The weights as they will be stored; rounded to float16 with half=True and loaded back
    into net, so that the threshold is chosen for the stored model."""
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
            raise ModelError("a weight does not fit in float16: pass --float32")
        net.load_state_dict(state)
    return state


def write_model_folder(
    output: Path, split: list[ImageRecord], state: dict[str, torch.Tensor], config: ModelConfig
) -> None:
    """The split first, then the weights and config.json (a folder with a config.json is a
    finished model); a failure takes away what was written."""
    check_output(output)  # again: minutes have passed
    created = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    try:
        write_split_csv(split, output / SPLIT_NAME)
        save_model(output, state, config)
    except BaseException:
        for name in (SPLIT_NAME, WEIGHTS_NAME, CONFIG_NAME):
            (output / name).unlink(missing_ok=True)
        if created:
            output.rmdir()
        raise
