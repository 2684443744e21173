"""Copy a trained run into the package as the bundled model, with its split manifest and card.

    python scripts/export_bundled_model.py runs/bundled ../shared/data --eval runs/bundled/heldout

The manifest names every image of the run's split by path (relative to the data root) and
sha256, so the held-out images can be found again on any machine. MODEL_CARD.md is rendered from
scripts/MODEL_CARD.template.md with the run's config and the held-out metrics. The old folder's
ONNX files go with it: run scripts/export_bundled_onnx.py next for the int8 file the package
ships (model.onnx is exported on first use).
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter
from pathlib import Path

import torch

from deepfake_detect.data.datasets import read_split_csv
from deepfake_detect.data.manifest import MANIFEST_NAME, manifest_rows, write_manifest
from deepfake_detect.inference.detector import BUNDLED_DIR
from deepfake_detect.models.checkpoint import load_tensors
from deepfake_detect.models.config import CONFIG_NAME, WEIGHTS_NAME, read_config
from deepfake_detect.models.ensemble import member_config
from deepfake_detect.training.ensembling import run_facts

LIMIT_BYTES = 25 * 1000 * 1000
TEMPLATE = Path(__file__).with_name("MODEL_CARD.template.md")


def interval(metrics: dict, key: str) -> str:
    low, high = metrics["intervals"][key] or (None, None)
    value = metrics["accuracy" if key == "accuracy" else "roc_auc"]
    return f"{value:.4f} [{low:.4f}, {high:.4f}]" if low is not None else f"{value:.4f}"


def metrics_row(name: str, m: dict) -> str:
    return (
        f"| {name} | {m['n_images']} | {interval(m, 'accuracy')} | {interval(m, 'roc_auc')} | "
        f"{m['per_class']['real']['recall']:.4f} | {m['per_class']['fake']['recall']:.4f} | "
        f"{m['eer']:.4f} | {m['tpr_at_1pct_fpr']:.4f} |"
    )


def split_table(rows) -> str:
    counts = Counter((r.source, r.split) for r in rows)
    lines = ["", "", "| source | train | valid | test (held out) |", "| --- | --- | --- | --- |"]
    for source in sorted({r.source for r in rows}):
        lines.append(f"| {source} | " + " | ".join(str(counts[source, s]) for s in
                                                  ("train", "valid", "test")) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def target_note(heldout: dict) -> str:
    missed = [
        f"{source} (accuracy {m['accuracy']:.4f}, ROC-AUC {m['roc_auc']:.4f})"
        for source, m in heldout["per_source"].items()
        if m["accuracy"] < 0.95 or m["roc_auc"] < 0.99
    ]
    if not missed:
        return "Both sources meet them."
    return "**Not yet met** on: " + "; ".join(missed) + "."


def recipe(config) -> dict[str, str]:
    """The card's words for the training options that config.json records."""
    t = config.training
    crop = t.get("train_crop")
    views = f"random {crop} x {crop} windows of the {config.image_size} px input" if crop else (
        f"the whole {config.image_size} px input"
    )  # fmt: skip
    augment = {
        "paper": "the paper's augmentation (rotation up to 10 degrees, shifts up to 10%)",
        "flip": "random left-right mirroring (no resampling)",
        "none": "no augmentation",
    }[t.get("augment", "paper")]
    cache = "cached frozen features" if t.get("feature_cache", True) else "the frozen backbone"
    if not t.get("reencode"):
        raise SystemExit(
            "the run was trained without --reencode: the card and the q75 held-out"
            " measurement assume every training image was re-encoded"
        )
    return {
        "qualities": t["reencode"].partition(":")[2],
        "frozen_phase": f"{t['frozen_epochs']} epochs training the head on {cache}",
        "augmentation": f"{views}, with {augment}"
        + (", every source and class given an equal share of each epoch"
           if t.get("balance_sources") else ""),
    }  # fmt: skip


HEAD_WORDS = {
    "paper": "Linear 512 + ReLU, Dropout 0.5, Linear 128 + ReLU, Dropout 0.5, Linear 64 + ReLU, "
    "Linear 1",
    "linear": "Linear 1",
}


def network(config) -> str:
    stem = " with its stem convolution at stride 1" if config.stem_stride == 1 else ""
    return f"`{config.backbone}` (timm){stem} + head `{config.head}` ({HEAD_WORDS[config.head]})"


def member_recipe(config, run_dir: Path, member: dict | None = None) -> tuple[str, float]:
    """One network's recipe in words, and its training time in seconds."""
    facts = member if member and "epochs_run" in member else run_facts(run_dir)
    if not facts:
        raise SystemExit(f"{run_dir}: no readable state.json, whose epochs and time the card tells")
    epochs_run, seconds = facts["epochs_run"], facts["training_seconds"]
    words = recipe(config)
    t = config.training
    depth = f", stochastic depth {t['drop_path']}" if t.get("drop_path") else ""
    text = (
        f"ImageNet weights, then {words['frozen_phase']}, then fine-tuning the whole network "
        f"(BatchNorm statistics frozen{depth}) for up to {t['finetune_epochs']} epochs on "
        f"{words['augmentation']}, AdamW, cosine schedule, best epoch by validation "
        f"{t.get('select_by', 'loss')} (epoch {config.metrics['best_epoch']} of "
        f"{epochs_run})"
    )
    return text, seconds


def minutes(seconds: float) -> str:
    return f"about {round(seconds / 60 / 5) * 5} minutes of training"


def describe(config, run_dir: Path) -> dict[str, str]:
    """The card's architecture, recipe and JPEG qualities: one network, an ensemble of several,
    or one network whose weights are the mean of several (`ensemble --combine weights`)."""
    script = "`scripts/train_default_model.sh`"
    entries = config.members or config.training.get("averaged")
    if not entries:
        text, seconds = member_recipe(config, run_dir)
        return {
            "architecture": f"{network(config)}; sigmoid of the logit = P(fake)",
            "recipe_text": f"Recipe ({script}, {minutes(seconds)} on a 2-core CPU): {text}.",
            "qualities": recipe(config)["qualities"],
        }
    members = [(member_config(config, m), Path(m["run"])) for m in entries]
    parts = [member_recipe(c, d, m) for (c, d), m in zip(members, entries, strict=True)]
    qualities = {recipe(c)["qualities"] for c, _ in members}
    nets = [network(c) for c, _ in members]
    how = (
        "`deepfake-detect ensemble`" if config.members
        else "`deepfake-detect ensemble --combine weights` into one network of their mean weights"
    )  # fmt: skip
    lines = [
        f"Recipe ({script}, {minutes(sum(s for _, s in parts))} on a 2-core CPU): "
        f"{len(members)} networks trained on the same split, then combined by "
        f"{how}, which chose the threshold on the validation split.",
        "",
        *(f"- `{d.name}`: {text}." for (_, d), (text, _) in zip(members, parts, strict=True)),
    ]
    if config.members:
        architecture = (
            f"the mean of the logits of {len(members)} networks, "
            + (f"each {nets[0]}" if len(set(nets)) == 1 else "; ".join(nets))
            + "; sigmoid of the mean logit = P(fake)"
        )
    else:
        architecture = (
            f"{network(config)}, its weights the mean of {len(members)} fine-tuned networks'; "
            "sigmoid of the logit = P(fake)"
        )
    return {
        "architecture": architecture,
        "recipe_text": "\n".join(lines),
        "qualities": " and ".join(sorted(qualities)),
    }


def weights_dtype(model_dir: Path) -> str:
    """How the weights are stored: float16 halves the file; the model computes in float32."""
    dtypes = {t.dtype for t in load_tensors(model_dir / WEIGHTS_NAME).values()}
    if torch.float16 in dtypes:
        return "float16, computed in float32"
    return "float32"


def render_card(run_dir: Path, rows, heldout: dict) -> str:
    config = read_config(run_dir)
    per_source = heldout["per_source"]
    table = [metrics_row(s, m) for s, m in per_source.items()] + [metrics_row("all", heldout)]
    return TEMPLATE.read_text().format(
        **config.to_dict() | {"mean": list(config.mean), "std": list(config.std)},
        n_images=len(rows),
        n_train=sum(r.split == "train" for r in rows),
        n_heldout=heldout["n_images"],
        split_table=split_table(rows),
        weights_dtype=weights_dtype(run_dir),
        **describe(config, run_dir),
        metrics_rows="\n".join(table),
        target_note=target_note(heldout),
    )


def fake_only_folders(run_dir: Path) -> list[Path]:
    """The run's --fake-only folders, as its options.json gives them (relative to the folder
    that `train` ran in, as the scripts run it: the repository)."""
    try:
        options = json.loads((run_dir / "options.json").read_text())
    except (OSError, ValueError):
        return []
    return [Path(folder) for folder in options.get("fake_only", [])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("data_root", type=Path)
    parser.add_argument("--eval", type=Path, required=True, help="held-out evaluate folder")
    args = parser.parse_args()
    read_config(args.run_dir)  # refuses anything that is not a finished, loadable model folder
    size = sum((args.run_dir / n).stat().st_size for n in (WEIGHTS_NAME, CONFIG_NAME))
    if size > LIMIT_BYTES:
        raise SystemExit(f"the model files are {size / 1e6:.1f} MB, over the 25 MB limit")
    heldout = json.loads((args.eval / "metrics.json").read_text())
    rows = manifest_rows(
        read_split_csv(args.run_dir / "split.csv"), args.data_root, fake_only_folders(args.run_dir)
    )
    card = render_card(args.run_dir, rows, heldout)  # every check before anything is written
    # Build the new folder beside the old one, then swap: never half an old, half a new model.
    staging, old = BUNDLED_DIR.with_name(".bundled.new"), BUNDLED_DIR.with_name(".bundled.old")
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir()
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        shutil.copyfile(args.run_dir / name, staging / name)
    write_manifest(rows, staging / MANIFEST_NAME)
    (staging / "heldout_metrics.json").write_text(json.dumps(heldout, indent=2) + "\n")
    (staging / "MODEL_CARD.md").write_text(card)
    if BUNDLED_DIR.exists():
        BUNDLED_DIR.rename(old)
    staging.rename(BUNDLED_DIR)
    shutil.rmtree(old, ignore_errors=True)
    print(f"bundled model in {BUNDLED_DIR}: model files {size / 1e6:.1f} MB")
    print(f"next: python scripts/export_bundled_onnx.py --data {args.data_root}")


if __name__ == "__main__":
    main()
