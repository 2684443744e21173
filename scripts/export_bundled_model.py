"""Copy a trained run into the package as the bundled model, with its split manifest.

    python scripts/export_bundled_model.py runs/bundled ../shared/data [--eval runs/bundled/heldout]

The manifest names every image of the run's split by path (relative to the data root) and
sha256, so the held-out images can be found again on any machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from deepfake_detect.checkpoint import CONFIG_NAME, WEIGHTS_NAME, read_config
from deepfake_detect.datasets import read_split_csv
from deepfake_detect.inference import BUNDLED_DIR
from deepfake_detect.manifest import MANIFEST_NAME, manifest_rows, write_manifest

LIMIT_BYTES = 25 * 1000 * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("data_root", type=Path)
    parser.add_argument("--eval", type=Path, help="evaluate output folder to ship as metrics")
    args = parser.parse_args()
    read_config(args.run_dir)  # refuses anything that is not a finished, loadable model folder
    BUNDLED_DIR.mkdir(exist_ok=True)
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        shutil.copyfile(args.run_dir / name, BUNDLED_DIR / name)
    records = read_split_csv(args.run_dir / "split.csv")
    write_manifest(manifest_rows(records, args.data_root), BUNDLED_DIR / MANIFEST_NAME)
    if args.eval:
        metrics = json.loads((args.eval / "metrics.json").read_text())
        (BUNDLED_DIR / "heldout_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    size = sum(p.stat().st_size for p in BUNDLED_DIR.iterdir())
    print(f"bundled model in {BUNDLED_DIR}: {size / 1e6:.1f} MB")
    if size > LIMIT_BYTES:
        raise SystemExit(f"the bundled files are {size / 1e6:.1f} MB, over the 25 MB limit")


if __name__ == "__main__":
    main()
