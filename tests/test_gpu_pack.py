"""scripts/gpu_pack.py: a run's training and validation images packed for a lent GPU, each with
the split and group it has here, PNGs as pixel-identical lossless WebP, held-out images left
behind, parts within the size asked for."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import load_script, write_class_folders
from PIL import Image

from deepfake_detect.data.datasets import index_dataset, write_split_csv
from deepfake_detect.data.manifest import file_sha256, read_manifest


@pytest.fixture
def run_split(tmp_path):
    data = tmp_path / "data"
    write_class_folders(data / "pngs", 6, seed=1, fmt="PNG")
    write_class_folders(data / "jpegs", 6, seed=2, fmt="JPEG")
    fakes = tmp_path / "fake-only" / "diffusion"
    write_class_folders(tmp_path / "tmp-fakes", 3, seed=3, fmt="JPEG")
    fakes.parent.mkdir()
    (tmp_path / "tmp-fakes" / "fake").rename(fakes)
    records = index_dataset([data])
    splits = ["train", "train", "valid", "test"]
    records = [dataclasses.replace(r, split=splits[i % 4]) for i, r in enumerate(records)]
    from deepfake_detect.data.datasets import ImageRecord

    records += [ImageRecord(p, 1, "diffusion", f"diffusion/{p.stem}", "train")
                for p in sorted(fakes.iterdir())]  # fmt: skip
    split = tmp_path / "split.csv"
    write_split_csv(records, split)
    return data, fakes, split, records


def test_packed_images_keep_their_split_pixels_and_names(run_split, tmp_path):
    data, fakes, split, records = run_split
    out = tmp_path / "pack"
    load_script("gpu_pack").main(["--split", str(split), "--data", str(data),
                                  "--fake-only", str(fakes), "--out", str(out),
                                  "--part-mb", "0.05"])  # fmt: skip
    rows = read_manifest(out / "manifest.csv")
    kept = [r for r in records if r.split != "test"]
    assert len(rows) == len(kept) and {r.split for r in rows} == {"train", "valid"}
    parts = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(parts) > 1  # 0.05 MiB parts: the images do not fit one
    packed = {}
    for part in parts:
        files = [f for f in part.rglob("*") if f.is_file()]
        assert sum(-(-f.stat().st_size // 4096) * 4096 for f in files) <= 0.05 * 2**20 or (
            len(files) == 1
        )
        packed |= {f.relative_to(part).as_posix(): f for f in files}
    by_path = {r.path: r for r in rows}
    formats = set()
    for record in kept:
        name = record.path.relative_to(data).as_posix() if record.path.is_relative_to(data) else (
            f"../fake-only/diffusion/{record.path.name}"
        )
        row = by_path[name]
        assert (row.split, row.group, row.label) == (record.split, record.group, record.label)
        where = f"data/{name}" if not name.startswith("..") else name[3:]
        target = packed[where]
        assert file_sha256(target) == row.sha256  # the manifest names the bytes that travel
        with Image.open(record.path) as a, Image.open(target) as b:
            assert np.array_equal(np.asarray(a), np.asarray(b))
            assert b.format == a.format or (a.format, b.format) == ("PNG", "WEBP")
            formats.add(b.format)
    assert "WEBP" in formats  # the PNGs did travel as WebP


def test_an_existing_output_is_refused(run_split, tmp_path):
    data, _, split, _ = run_split
    (tmp_path / "pack").mkdir()
    with pytest.raises(SystemExit, match="exists"):
        load_script("gpu_pack").main(["--split", str(split), "--data", str(data),
                                      "--out", str(tmp_path / "pack")])  # fmt: skip


def test_a_failed_pack_leaves_nothing_and_says_why_in_one_line(run_split, tmp_path):
    data, _, split, _ = run_split
    out = tmp_path / "pack"
    script = load_script("gpu_pack")
    # jpegs/ pack first, then the first PNG lies outside --data: the pack stops half-way
    with pytest.raises(SystemExit, match="under neither --data nor a --fake-only folder"):
        script.main(["--split", str(split), "--data", str(data / "jpegs"), "--out", str(out)])
    with pytest.raises(SystemExit, match="no such file"):
        script.main(["--split", str(tmp_path / "missing.csv"), "--data", str(data),
                     "--out", str(out)])  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "fake-only", "split.csv",
                                                           "tmp-fakes"]  # fmt: skip
