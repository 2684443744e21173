"""Lay out the bundled model's train and validation images with part of one source's training
images left out: the data of a learning curve, on the bundled model's own split.

    python scripts/subsample_source.py ../shared/data runs/faces-half \\
        --source faces140k-sample --keep 0.5 --seed 1
    deepfake-detect train --data runs/faces-half --no-audit --seed 1 ... (the bundled recipe)

The output is a split-folder layout, SOURCE/{train,valid}/{real,fake}/NAME, of hard links (copies
across file systems) to the images the split manifest names, each checked against its sha256.
`train` takes the split from the layout, so every run keeps the manifest's validation images and
never sees its held-out ones. Of the source's training images, each class keeps round(keep x n),
drawn with --seed: the seventh round of docs/experiments.md used --keep 0.5 and 0.25 with
seeds 1 and 2.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path, PurePosixPath

SPLITS = ("train", "valid")


def main(argv: list[str] | None = None) -> int:
    from deepfake_detect.errors import DetectorError

    args = parse_args(argv)
    try:
        kept = build_layout(args.data, args.out, args.source, args.keep, args.seed, args.manifest)
    except (DetectorError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for (split, label), count in sorted(kept.items()):
        print(f"{args.source} {split} {label}: {count} images")
    return 0


def parse_args(argv):
    from deepfake_detect.data.manifest import MANIFEST_NAME

    default = Path(__file__).parents[1] / "src" / "deepfake_detect" / "bundled" / MANIFEST_NAME
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, help="The data root the manifest's paths are relative to.")
    p.add_argument("out", type=Path, help="New folder for the layout.")
    p.add_argument("--source", required=True, help="Source folder whose training images to thin.")
    p.add_argument("--keep", type=float, required=True, help="Share of them to keep, in (0, 1].")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--manifest", type=Path, default=default)
    return p.parse_args(argv)


def build_layout(
    data: Path, out: Path, source: str, keep: float, seed: int, manifest: Path
) -> dict[tuple[str, str], int]:
    """Write the layout; returns the kept image count of `source` per (split, label)."""
    from deepfake_detect.data.datasets import LABEL_NAMES
    from deepfake_detect.data.manifest import file_sha256, read_manifest
    from deepfake_detect.errors import DataError

    if not 0 < keep <= 1:
        raise ValueError(f"--keep must lie in (0, 1], got {keep}")
    if not data.is_dir():
        raise ValueError(f"{data}: no such folder")
    if out.exists():
        raise ValueError(f"{out}: already exists; choose a new folder")
    if not out.parent.is_dir():
        raise ValueError(f"{out.parent}: no such folder")
    if out.resolve().is_relative_to(data.resolve()):
        raise ValueError(f"{out}: inside the data folder {data}; choose a folder outside it")
    rows = [r for r in read_manifest(manifest) if r.split in SPLITS]
    if source not in {r.source for r in rows}:
        raise ValueError(f"{manifest}: no source named {source!r}")
    by_class = defaultdict(list)
    for row in rows:
        if row.source == source and row.split == "train":
            by_class[LABEL_NAMES[row.label]].append(row)
    dropped = set()
    for label, members in by_class.items():
        members.sort(key=lambda r: PurePosixPath(r.path).name)
        n_keep = round(keep * len(members))
        if n_keep == 0:
            raise ValueError(f"--keep {keep} keeps no {label} training image of {source}")
        # Random(seed * 10 + len(label)), which is seed * 10 + 4 for both classes: the draw
        # that made the seventh-round runs of docs/experiments.md.
        rng = random.Random(seed * 10 + len(label))
        dropped |= {r.path for r in rng.sample(members, len(members) - n_keep)}
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    kept: dict[tuple[str, str], int] = defaultdict(int)
    try:
        for row in rows:
            if row.path in dropped:
                continue
            src = data / row.path
            if not src.is_file():
                raise DataError(f"{src}: named by the manifest but missing")
            if file_sha256(src) != row.sha256:
                raise DataError(f"{src}: content differs from the manifest's (sha256)")
            label = LABEL_NAMES[row.label]
            dst = staging / row.source / row.split / label / PurePosixPath(row.path).name
            if dst.exists():
                raise DataError(f"{src}: a second image named {dst.name} in {dst.parent.name}/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
            if row.source == source:
                kept[(row.split, label)] += 1
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dict(kept)


if __name__ == "__main__":
    sys.exit(main())
