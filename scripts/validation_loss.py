"""A model's validation loss as a run's trainer computed it: the run's split, its validation
re-encoding and the seed that drew each image's JPEG quality, with another model's weights.

    python scripts/validation_loss.py --run RUN --model src/deepfake_detect/bundled --seed 0

`train --seed` also sets the JPEG quality each validation image is re-encoded at, so the losses
two runs of different seeds report are not measured on the same images; this measures a model on
the run's own (and, with --seed, on another seed's). The model must share the run's backbone,
head and input size (`train --init-from`'s check). Nothing is written to the run folder.

    python scripts/validation_loss.py --run RUN --model M --calibrate [--output DIR]

also fits the temperature and chooses the threshold on that validation pass, as the trainer
does at the end of a run, by each rule (`--threshold-rule`): the numbers the run would have
stored. With --output, a new model folder: M's weights, the temperature and the threshold of
`--threshold-rule` (default: the trainer's), and a record of the refit in its metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from deepfake_detect.errors import DetectorError


def check_same_split(valid, split_csv: Path) -> None:
    """Refuse to go on when the options no longer give the run's validation images (data moved
    or changed since)."""
    from deepfake_detect.data.datasets import read_split_csv

    recorded = {r.path.resolve() for r in read_split_csv(split_csv) if r.split == "valid"}
    if {r.path.resolve() for r in valid} != recorded:
        raise DetectorError(f"{split_csv}: the run's options no longer give its validation images")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="run folder (its options.json)")
    parser.add_argument("--model", type=Path, required=True, help="model folder to measure")
    parser.add_argument(
        "--seed",
        type=int,
        action="append",
        help="seed of the validation re-encoding (default: the run's); repeatable",
    )
    parser.add_argument("--calibrate", action="store_true", help="temperature and thresholds")
    parser.add_argument("--threshold-rule", default=None, help="the rule --output stores")
    parser.add_argument("--output", type=Path, help="with --calibrate: new model folder")
    args = parser.parse_args(argv)
    from deepfake_detect.evaluation.metrics import THRESHOLD_RULES

    rule = args.threshold_rule or THRESHOLD_RULES[0]
    if rule not in THRESHOLD_RULES:
        parser.error(f"--threshold-rule must be one of {', '.join(THRESHOLD_RULES)}")
    if args.output and not args.calibrate:
        parser.error("--output needs --calibrate")
    if args.output and args.output.exists() and any(args.output.iterdir()):
        parser.error(f"--output {args.output}: exists and is not empty")
    if args.output and args.seed and len(args.seed) > 1:
        parser.error("--output takes one --seed")
    try:
        stored = json.loads((args.run / "options.json").read_text())
    except (OSError, ValueError) as exc:
        sys.exit(f"error: --run {args.run}: no readable options.json ({exc})")
    from deepfake_detect.evaluation.scoring import calibration_from_logits, validation_metrics
    from deepfake_detect.training.options import TrainOptions
    from deepfake_detect.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as scratch:
        # the run's own options (its data, manifest and split seed: its split) in a scratch folder
        stored.update(
            output=str(Path(scratch) / "run"),
            resume=False,
            progress=False,
            init_from=str(args.model),
        )
        try:
            trainer = Trainer(TrainOptions(**stored))
            check_same_split(trainer.splits.valid, args.run / "split.csv")
        except (DetectorError, ValueError, TypeError) as exc:
            sys.exit(f"error: {exc}")
        for seed in args.seed or [trainer.options.seed]:
            logits, labels = trainer.validation_logits(seed)
            m = validation_metrics(logits, labels)
            print(
                f"seed {seed}: {len(trainer.splits.valid)} images, "
                f"validation loss {m['val_loss']:.4f}, "
                f"accuracy {m['val_accuracy']:.4f}, ROC-AUC {m['val_auc']:.4f}"
            )
            if args.calibrate:
                fitted = {
                    name: calibration_from_logits(logits, labels, threshold_rule=name)
                    for name in THRESHOLD_RULES
                }
                for name, (temperature, threshold, fm) in fitted.items():
                    print(
                        f"  {name}: temperature {temperature:.4f}, threshold {threshold:.4f}, "
                        f"accuracy {fm['accuracy']:.4f}, balanced accuracy "
                        f"{fm['balanced_accuracy']:.4f}, reals called fake "
                        f"{fm['false_alarm_rate']:.4f}, fakes caught {fm['detection_rate']:.4f}"
                    )
                if args.output:
                    write_refit(args.model, args.output, fitted[rule], rule, args.run, seed)
                    print(f"written: {args.output} ({rule})")
    return 0


def write_refit(model: Path, output: Path, fitted, rule: str, run: Path, seed: int) -> None:
    """A model folder: `model`'s weights with the refitted temperature, threshold and metrics
    (`calibrate`'s writer: config.json last, so an interrupted copy is no model)."""
    import time

    from deepfake_detect.evaluation.calibration import write_model_folder
    from deepfake_detect.models.config import read_config

    config = read_config(model)
    temperature, threshold, metrics = fitted
    record = {
        "from": {"threshold": config.threshold, "temperature": config.temperature,
                 "version": config.version},
        "rule": rule,
        "validation_of": run.name,
        "seed": seed,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }  # fmt: skip
    config.temperature, config.threshold = temperature, threshold
    config.version = time.strftime("%Y.%m.%d", time.gmtime())  # its labels are not the old ones
    config.metrics = {**config.metrics, **metrics, "threshold_refit": record}
    write_model_folder(model, output, config)


if __name__ == "__main__":
    raise SystemExit(main())
