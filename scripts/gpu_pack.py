"""Pack a run's training and validation images for a lent GPU machine, whose calls carry at most
64 MiB each: parts of at most --part-mb, and a split manifest that names every packed image by
the sha256 of its packed bytes, so that `train --split-manifest` there gives each the split and
group of the run here (no image is split anew, none is held out there).

    python scripts/gpu_pack.py --split /work/exp/split-d/split.csv --data ../shared/data \
        --fake-only ../shared/fake-only/diffusion-faces --out .gpu

Images keep their paths relative to the data root (`partN/data/...`, and
`partN/fake-only/<folder>/...`), so the runs there sort, thin and sample them as here. PNG files
(headshots-sg2's reals) travel as lossless WebP under their own names: every one is checked pixel
for pixel against the original (the loader reads formats from the bytes, and training re-encodes
every image as JPEG anyway).
Held-out images never travel: the held-out split is measured here.

A part and the work tree must fit one call (64 MiB, counted in disk blocks), and the device's
work tree keeps nothing between calls: carry each part as a folder of its own in one call that
copies it to the machine's /tmp (`cp -r PART/. /tmp/gpu-data/`), the wheels the image lacks
likewise (`pip install --target /tmp/gpu-site`), and start scripts/gpu_round.sh in the call
that carries the last part (its header says how).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from deepfake_detect.data.datasets import read_split_csv
from deepfake_detect.data.images import sniff_format
from deepfake_detect.data.manifest import ManifestRow, write_manifest
from deepfake_detect.errors import DataError

MIB = 1 << 20
BLOCK = 4096


def packed_bytes(path: Path) -> bytes:
    """The file's bytes, or for a PNG the same pixels as lossless WebP (checked)."""
    data = path.read_bytes()
    if sniff_format(data[:64]) != "PNG":
        return data
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        pixels = np.asarray(im)
        buffer = io.BytesIO()
        im.save(buffer, format="WEBP", lossless=True, quality=100, method=4, exact=True)
    webp = buffer.getvalue()
    with Image.open(io.BytesIO(webp)) as back:
        if back.mode != im.mode or not np.array_equal(np.asarray(back), pixels):
            sys.exit(f"{path}: lossless WebP does not give back the PNG's pixels")
    return webp if len(webp) < len(data) else data


def main(argv: list[str] | None = None) -> None:
    """Packs into OUT.partial, renamed to OUT at the end: a failed pack leaves no OUT."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", required=True, help="a run's split.csv")
    parser.add_argument("--data", required=True, help="the data root the run was given")
    parser.add_argument("--fake-only", action="append", default=[], help="its --fake-only folders")
    parser.add_argument("--out", required=True, help="a new folder for the parts and manifest")
    parser.add_argument("--part-mb", type=float, default=50.0)
    parser.add_argument("--splits", default="train,valid")
    args = parser.parse_args(argv)

    out = Path(args.out)
    if out.exists():
        sys.exit(f"{out}: exists; give a new folder")
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        rows, sizes = pack(args, staging)
    except (DataError, SystemExit) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        sys.exit(str(exc) if isinstance(exc, DataError) else exc.code)
    staging.rename(out)
    for k, size in sizes.items():
        print(f"part{k}: {size / MIB:.1f} MiB")
    print(f"{len(rows)} images ({args.splits}); manifest {out / 'manifest.csv'}")


def pack(args, out: Path) -> tuple[list[ManifestRow], dict[int, int]]:
    roots = [(Path(args.data).resolve(), Path("data"))]
    roots += [(Path(f).resolve(), Path("fake-only") / Path(f).name) for f in args.fake_only]
    keep = set(args.splits.split(","))
    records = sorted(
        (r for r in read_split_csv(args.split) if r.split in keep), key=lambda r: str(r.path)
    )
    rows, part, used, sizes = [], 1, 0, {}
    data_root = roots[0][0]
    for r in records:
        path = Path(r.path).resolve()
        for root, prefix in roots:
            if path.is_relative_to(root):
                relative = prefix / path.relative_to(root)
                break
        else:
            sys.exit(f"{path}: under neither --data nor a --fake-only folder")
        data = packed_bytes(path)
        blocks = -(-len(data) // BLOCK) * BLOCK  # the device counts disk blocks, not bytes
        if used + blocks > args.part_mb * MIB:
            sizes[part], part, used = used, part + 1, 0
        target = out / f"part{part}" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        used += blocks
        name = Path(os.path.relpath(path, data_root)).as_posix()
        rows.append(
            ManifestRow(name, hashlib.sha256(data).hexdigest(), r.label, r.source, r.group, r.split)
        )
    sizes[part] = used
    write_manifest(rows, out / "manifest.csv")
    return rows, sizes


if __name__ == "__main__":
    main()
