"""Copy a trained run into the package as the bundled model, with its split manifest and card.

    python scripts/export_bundled_model.py runs/bundled ../shared/data --eval runs/bundled/heldout

The manifest names every image of the run's split by path (relative to the data root) and
sha256, so the held-out images can be found again on any machine. MODEL_CARD.md is rendered from
scripts/MODEL_CARD.template.md with the run's config and the held-out metrics.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter
from pathlib import Path

from deepfake_detect.checkpoint import CONFIG_NAME, WEIGHTS_NAME, read_config
from deepfake_detect.datasets import read_split_csv
from deepfake_detect.inference import BUNDLED_DIR
from deepfake_detect.manifest import MANIFEST_NAME, manifest_rows, write_manifest

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
        "stem_note": " with its stem convolution at stride 1 (full resolution in the first layer)"
        if config.stem_stride == 1 else "",
        "qualities": t["reencode"].partition(":")[2],
        "frozen_phase": f"{t['frozen_epochs']} epochs training the head on {cache}",
        "augmentation": f"{views}, with {augment}",
    }  # fmt: skip


def render_card(run_dir: Path, rows, heldout: dict) -> str:
    config = read_config(run_dir)
    state = json.loads((run_dir / "state.json").read_text())
    seconds = sum(t["seconds"] for t in state["timings"])
    per_source = heldout["per_source"]
    table = [metrics_row(s, m) for s, m in per_source.items()] + [metrics_row("all", heldout)]
    return TEMPLATE.read_text().format(
        **config.to_dict() | {"mean": list(config.mean), "std": list(config.std)},
        n_images=len(rows),
        n_train=sum(r.split == "train" for r in rows),
        n_heldout=heldout["n_images"],
        split_table=split_table(rows),
        duration=f"about {round(seconds / 60 / 5) * 5} minutes of training",
        **recipe(config),
        finetune_epochs=config.training["finetune_epochs"],
        best_epoch=config.metrics["best_epoch"],
        epochs_run=len(state["history"]),
        metrics_rows="\n".join(table),
        target_note=target_note(heldout),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("data_root", type=Path)
    parser.add_argument("--eval", type=Path, required=True, help="held-out evaluate folder")
    args = parser.parse_args()
    read_config(args.run_dir)  # refuses anything that is not a finished, loadable model folder
    heldout = json.loads((args.eval / "metrics.json").read_text())
    rows = manifest_rows(read_split_csv(args.run_dir / "split.csv"), args.data_root)
    BUNDLED_DIR.mkdir(exist_ok=True)
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        shutil.copyfile(args.run_dir / name, BUNDLED_DIR / name)
    write_manifest(rows, BUNDLED_DIR / MANIFEST_NAME)
    (BUNDLED_DIR / "heldout_metrics.json").write_text(json.dumps(heldout, indent=2) + "\n")
    (BUNDLED_DIR / "MODEL_CARD.md").write_text(render_card(args.run_dir, rows, heldout))
    size = sum((BUNDLED_DIR / n).stat().st_size for n in (WEIGHTS_NAME, CONFIG_NAME))
    print(f"bundled model in {BUNDLED_DIR}: model files {size / 1e6:.1f} MB")
    if size > LIMIT_BYTES:
        raise SystemExit(f"the model files are {size / 1e6:.1f} MB, over the 25 MB limit")


if __name__ == "__main__":
    main()
