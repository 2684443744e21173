"""A model's validation loss as a run's trainer computed it: the run's split, its validation
re-encoding and the seed that drew each image's JPEG quality, with another model's weights.

    python scripts/validation_loss.py --run RUN --model src/deepfake_detect/bundled --seed 0

`train --seed` also sets the JPEG quality each validation image is re-encoded at, so the losses
two runs of different seeds report are not measured on the same images; this measures a model on
the run's own (and, with --seed, on another seed's). The model must share the run's backbone,
head and input size (`train --init-from`'s check). Nothing is written to the run folder.
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
    args = parser.parse_args(argv)
    try:
        stored = json.loads((args.run / "options.json").read_text())
    except (OSError, ValueError) as exc:
        sys.exit(f"error: --run {args.run}: no readable options.json ({exc})")
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
            m = trainer.measure_validation(seed)
            print(
                f"seed {seed}: {len(trainer.splits.valid)} images, "
                f"validation loss {m['val_loss']:.4f}, "
                f"accuracy {m['val_accuracy']:.4f}, ROC-AUC {m['val_auc']:.4f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
