"""Tests for deepfake_detect.data.datasets: layouts, errors, splitting, sampling, split CSVs."""

from __future__ import annotations

import io
import os
import random
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from deepfake_detect.data import datasets
from deepfake_detect.data.datasets import (
    CSV_COLUMNS,
    ImageRecord,
    check_groups,
    count_table,
    index_dataset,
    make_split,
    read_split_csv,
    sample_balanced,
    select,
    write_split_csv,
)
from deepfake_detect.errors import DataError

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
KAGGLE_HEADER = ",original_path,id,label,label_str,path\n"


def _image_bytes(fmt: str) -> bytes:
    """A real 4x4 image in the given PIL format (the index ignores content, the loader won't)."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (120, 30, 200)).save(buffer, format=fmt)
    return buffer.getvalue()


PNG = _image_bytes("PNG")
JPEG = _image_bytes("JPEG")


def write_image(path: Path) -> Path:
    """Write a tiny image, PNG or JPEG after the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PNG if path.suffix.lower() == ".png" else JPEG)
    return path


def make_classes(folder: Path, n_real: int = 2, n_fake: int = 2) -> Path:
    """Make folder/real and folder/fake with a few images each."""
    for i in range(n_real):
        write_image(folder / "real" / f"r{i}.jpg")
    for i in range(n_fake):
        write_image(folder / "fake" / f"f{i}.png")
    return folder


def make_kaggle(root: Path, with_csvs: bool = True, valid_name: str = "valid") -> Path:
    """A tiny Kaggle 140k copy: 2 real + 1 fake per split, plus optional CSVs."""
    image_dir = root / "real_vs_fake" / "real-vs-fake"
    for split in ("train", valid_name, "test"):
        rows = []
        for cls, ids in (("real", (31355, 2)), ("fake", ("A1B2C3",))):
            for image_id in ids:
                relative = f"{split}/{cls}/{image_id}.jpg"
                write_image(image_dir / relative)
                # The Kaggle numeric label is 1 for real, 0 for fake: the inverse of ours.
                numeric = 1 if cls == "real" else 0
                original = f"/kaggle/input/x/{image_id}.jpg"
                rows.append(f"{len(rows)},{original},{image_id},{numeric},{cls},{relative}\n")
        if with_csvs:
            (root / f"{split}.csv").write_text(KAGGLE_HEADER + "".join(rows))
    return root


def summary(records: list[ImageRecord]) -> list[tuple]:
    """Records without the source-specific parts, to compare layouts."""
    return [(r.path, r.label, r.split) for r in records]


# ---------------------------------------------------------------------------------------------
# Layouts


def test_kaggle_csvs_read_label_str_not_the_inverted_numeric_label(tmp_path: Path) -> None:
    root = make_kaggle(tmp_path / "kaggle-140k")
    # An image on disk but not in any CSV: the CSVs, not the folders, say what the set holds.
    write_image(root / "real_vs_fake" / "real-vs-fake" / "train" / "real" / "extra.jpg")
    records = index_dataset([root])
    assert len(records) == 9
    assert {r.source for r in records} == {"kaggle-140k"}
    by_name = {(r.split, r.path.stem): r for r in records}
    real = by_name[("train", "31355")]
    assert real.label == 0  # CSV row: label=1, label_str=real
    assert by_name[("train", "A1B2C3")].label == 1  # CSV row: label=0, label_str=fake
    assert real.path == root / "real_vs_fake/real-vs-fake/train/real/31355.jpg"
    assert real.path.is_absolute()
    assert real.group == "kaggle-140k/train/real/31355"
    assert Counter(r.split for r in records) == {"train": 3, "valid": 3, "test": 3}
    assert records == sorted(records, key=lambda r: r.path)


def test_kaggle_without_csvs_uses_the_folders(tmp_path: Path) -> None:
    with_csvs = index_dataset([make_kaggle(tmp_path / "a" / "kaggle-140k")])
    without = index_dataset([make_kaggle(tmp_path / "b" / "kaggle-140k", with_csvs=False)])
    relative = [(r.path.relative_to(tmp_path / "a"), r.label, r.split, r.group) for r in with_csvs]
    assert relative == [
        (r.path.relative_to(tmp_path / "b"), r.label, r.split, r.group) for r in without
    ]


def test_kaggle_root_missing_one_csv_indexes_that_split_from_its_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A copy with train.csv and valid.csv but no test.csv once lost its test/ images silently."""
    root = make_kaggle(tmp_path / "kaggle-140k")
    (root / "test.csv").unlink()
    with caplog.at_level("INFO", logger="deepfake_detect"):
        records = index_dataset([root])
    assert Counter(r.split for r in records) == {"train": 3, "valid": 3, "test": 3}
    assert [m for m in caplog.messages if "no test.csv" in m and "3 images" in m]


def test_folder_scans_take_every_image_suffix_and_name_what_they_skip(tmp_path: Path) -> None:
    """.jfif (JPEG) files and images without an extension were skipped with no word."""
    from deepfake_detect.data.datasets import scan_folder

    folder = tmp_path / "photos"
    for name in ("a.jpg", "b.JFIF", "c.jpe", "d.heic", "e.avif"):
        write_image(folder / name)
    write_image(folder / "sub" / "no_extension")
    (folder / "notes.txt").write_text("not an image")
    (folder / "README").write_text("no extension, not an image")
    (folder / ".hidden.jpg").write_text("ignored")
    images, skipped = scan_folder(folder)
    assert [p.name for p in images] == ["a.jpg", "b.JFIF", "c.jpe", "d.heic", "e.avif",
                                        "no_extension"]  # fmt: skip
    assert [p.name for p in skipped] == ["README", "notes.txt"]


def test_a_named_pipe_in_a_folder_is_skipped_unopened(tmp_path: Path) -> None:
    # Opening a pipe that no one writes to waits forever: a folder's pipes are never read.
    from deepfake_detect.data.datasets import scan_folder

    folder = tmp_path / "photos"
    write_image(folder / "a.jpg")
    os.mkfifo(folder / "pipe.jpg")
    os.mkfifo(folder / "pipe")  # no suffix: its bytes would have been sniffed
    images, skipped = scan_folder(folder)
    assert [p.name for p in images] == ["a.jpg"]
    assert [p.name for p in skipped] == ["pipe", "pipe.jpg"]


def test_kaggle_root_and_real_vs_fake_folder_give_the_same_images(tmp_path: Path) -> None:
    root = make_kaggle(tmp_path / "kaggle-140k", with_csvs=False)
    inner = index_dataset([root / "real_vs_fake" / "real-vs-fake"])
    assert summary(inner) == summary(index_dataset([root]))
    assert {r.source for r in inner} == {"real-vs-fake"}
    assert summary(index_dataset([root / "real_vs_fake"])) == summary(inner)


@pytest.mark.parametrize("alias", ["val", "validation", "Valid"])
def test_validation_folder_aliases_map_to_valid(tmp_path: Path, alias: str) -> None:
    for split in ("train", alias, "test"):
        make_classes(tmp_path / "data" / split, 1, 1)
    records = index_dataset([tmp_path / "data"])
    assert Counter(r.split for r in records) == {"train": 2, "valid": 2, "test": 2}


def test_split_layout_may_lack_a_whole_split(tmp_path: Path) -> None:
    make_classes(tmp_path / "data" / "train")
    make_classes(tmp_path / "data" / "test")
    assert {r.split for r in index_dataset([tmp_path / "data"])} == {"train", "test"}


def test_single_real_fake_folder(tmp_path: Path) -> None:
    folder = make_classes(tmp_path / "headshots", n_real=3, n_fake=2)
    records = index_dataset([str(folder)])  # str paths work as well as Path
    assert Counter(r.label for r in records) == {0: 3, 1: 2}
    assert {r.source for r in records} == {"headshots"}
    assert {r.split for r in records} == {None}
    assert records[0].group == "headshots/fake/f0"


def test_a_lone_path_is_one_root(tmp_path: Path) -> None:
    folder = make_classes(tmp_path / "x")
    assert index_dataset(folder) == index_dataset([folder])
    assert index_dataset(str(folder)) == index_dataset([folder])


def test_images_found_recursively_by_suffix_case_insensitive(tmp_path: Path) -> None:
    folder = make_classes(tmp_path / "d", 1, 1)
    write_image(folder / "real" / "nested" / "deeper" / "a.JPEG")
    write_image(folder / "real" / "b.Png")
    write_image(folder / "real" / ".hidden.jpg")
    write_image(folder / "real" / ".cache" / "c.jpg")
    (folder / "real" / "notes.txt").write_text("not an image")
    (folder / "real" / "jpg").write_text("no suffix")
    records = index_dataset([folder])
    names = sorted(r.path.name for r in records if r.label == 0)
    assert names == ["a.JPEG", "b.Png", "r0.jpg"]
    assert "d/real/nested/deeper/a" in {r.group for r in records}


def test_multi_source_folder(tmp_path: Path) -> None:
    make_classes(tmp_path / "data" / "faces140k-sample", 2, 3)
    make_classes(tmp_path / "data" / "headshots-sg2", 4, 1)
    (tmp_path / "data" / "README.md").write_text("# data")
    (tmp_path / "data" / ".git").mkdir()
    records = index_dataset([tmp_path / "data"])
    counts = Counter((r.source, r.label) for r in records)
    assert counts == {
        ("faces140k-sample", 0): 2,
        ("faces140k-sample", 1): 3,
        ("headshots-sg2", 0): 4,
        ("headshots-sg2", 1): 1,
    }
    assert "headshots-sg2/real/r0" in {r.group for r in records}


def test_multi_source_folder_may_hold_a_kaggle_copy(tmp_path: Path) -> None:
    make_classes(tmp_path / "data" / "small")
    make_kaggle(tmp_path / "data" / "kaggle-140k")
    records = index_dataset([tmp_path / "data"])
    assert Counter(r.source for r in records) == {"small": 4, "kaggle-140k": 9}


def test_several_roots_are_concatenated_and_sorted(tmp_path: Path) -> None:
    second = make_classes(tmp_path / "b-set")
    first = make_classes(tmp_path / "a-set")
    records = index_dataset([second, first])
    assert {r.source for r in records} == {"a-set", "b-set"}
    assert [r.path for r in records] == sorted(r.path for r in records)
    assert records == index_dataset([first, second])


# ---------------------------------------------------------------------------------------------
# Layout errors


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        index_dataset([tmp_path / "nope"])


def test_root_is_a_file(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg")
    with pytest.raises(DataError, match="not a folder"):
        index_dataset([tmp_path / "a.jpg"])


def test_no_roots() -> None:
    with pytest.raises(DataError, match="no dataset folder"):
        index_dataset([])


def test_folder_matching_no_layout_says_what_was_expected(tmp_path: Path) -> None:
    write_image(tmp_path / "photos" / "a.jpg")
    (tmp_path / "photos" / "misc").mkdir()
    with pytest.raises(DataError, match="expected real/ and fake/ subfolders, subfolders that"):
        index_dataset([tmp_path / "photos"])


def test_multi_source_with_a_subfolder_of_no_layout(tmp_path: Path) -> None:
    make_classes(tmp_path / "data" / "good")
    write_image(tmp_path / "data" / "stray" / "a.jpg")
    with pytest.raises(DataError, match=r"stray: expected real/ and fake/"):
        index_dataset([tmp_path / "data"])


def test_missing_class_folder(tmp_path: Path) -> None:
    write_image(tmp_path / "set" / "real" / "a.jpg")
    with pytest.raises(DataError, match=r"set: no fake/ folder$"):
        index_dataset([tmp_path / "set"])


def test_class_folder_without_images(tmp_path: Path) -> None:
    write_image(tmp_path / "set" / "real" / "a.jpg")
    (tmp_path / "set" / "fake").mkdir()
    (tmp_path / "set" / "fake" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"set/fake: no images \(.*\.jpg.*\.png"):
        index_dataset([tmp_path / "set"])


def test_split_missing_a_class(tmp_path: Path) -> None:
    make_classes(tmp_path / "data" / "train")
    write_image(tmp_path / "data" / "test" / "real" / "a.jpg")
    with pytest.raises(DataError, match=r"test: no fake/ folder"):
        index_dataset([tmp_path / "data"])


def test_two_names_for_one_split(tmp_path: Path) -> None:
    make_classes(tmp_path / "data" / "val")
    make_classes(tmp_path / "data" / "valid")
    with pytest.raises(DataError, match="both"):
        index_dataset([tmp_path / "data"])


def test_same_source_name_twice(tmp_path: Path) -> None:
    one = make_classes(tmp_path / "one" / "faces")
    two = make_classes(tmp_path / "two" / "faces")
    with pytest.raises(DataError, match="source name 'faces' appears twice"):
        index_dataset([one, two])
    with pytest.raises(DataError, match="appears twice"):
        index_dataset([one, one])


def test_kaggle_bad_label_str(tmp_path: Path) -> None:
    root = make_kaggle(tmp_path / "k")
    text = (root / "valid.csv").read_text().replace(",fake,", ",synthetic,")
    (root / "valid.csv").write_text(text)
    with pytest.raises(DataError, match=r"valid.csv, line \d+: label_str 'synthetic'"):
        index_dataset([root])


def test_kaggle_missing_images_named_and_counted(tmp_path: Path) -> None:
    root = make_kaggle(tmp_path / "k")
    image_dir = root / "real_vs_fake" / "real-vs-fake"
    (image_dir / "test" / "real" / "2.jpg").unlink()
    (image_dir / "test" / "fake" / "A1B2C3.jpg").unlink()
    with pytest.raises(DataError, match=r"test.csv: 2 listed images are missing, first: .*2\.jpg"):
        index_dataset([root])


def test_kaggle_csv_without_needed_columns(tmp_path: Path) -> None:
    root = make_kaggle(tmp_path / "k")
    (root / "train.csv").write_text("id,label\n1,1\n")
    with pytest.raises(DataError, match="no label_str, path column"):
        index_dataset([root])


def test_kaggle_csv_listing_one_class_only(tmp_path: Path) -> None:
    root = make_kaggle(tmp_path / "k")
    lines = (root / "test.csv").read_text().splitlines(keepends=True)
    (root / "test.csv").write_text("".join(line for line in lines if ",fake," not in line))
    with pytest.raises(DataError, match="test.csv: no fake images listed"):
        index_dataset([root])


# ---------------------------------------------------------------------------------------------
# make_split


def synthetic(sources: dict[str, int], group_size: int = 1) -> list[ImageRecord]:
    """Records for sources with n images per class, `group_size` images per group."""
    records = []
    for source, n in sources.items():
        for label, cls in ((0, "real"), (1, "fake")):
            for i in range(n):
                group = f"{source}/{cls}/g{i // group_size}"
                path = Path(f"/data/{source}/{cls}/{i:05d}.jpg")
                records.append(ImageRecord(path, label, source, group))
    return records


def test_make_split_is_deterministic_and_independent_of_order() -> None:
    records = synthetic({"a": 50, "b": 30})
    first = make_split(records, seed=3)
    assert first == make_split(records, seed=3)
    shuffled = records[:]
    random.Random(1).shuffle(shuffled)
    assert {r.path: r.split for r in make_split(shuffled, seed=3)} == {
        r.path: r.split for r in first
    }
    assert make_split(records, seed=4) != first
    assert [r.path for r in first] == [r.path for r in records]  # input order kept


def test_make_split_stratified_exact_with_single_image_groups() -> None:
    records = make_split(synthetic({"a": 100, "b": 200}), valid_fraction=0.1, test_fraction=0.2)
    counts = Counter((r.source, r.label, r.split) for r in records)
    for source, n in (("a", 100), ("b", 200)):
        for label in (0, 1):
            assert counts[source, label, "test"] == 0.2 * n
            assert counts[source, label, "valid"] == 0.1 * n
            assert counts[source, label, "train"] == 0.7 * n


def test_make_split_keeps_groups_whole_and_roughly_stratified() -> None:
    records = synthetic({"a": 600, "b": 300}, group_size=3)
    split = make_split(records, valid_fraction=0.15, test_fraction=0.25, seed=7)
    check_groups(split)
    per_group = {}
    for r in split:
        assert per_group.setdefault(r.group, r.split) == r.split
    counts = Counter((r.source, r.label, r.split) for r in split)
    for source, n in (("a", 600), ("b", 300)):
        for label in (0, 1):
            assert abs(counts[source, label, "test"] / n - 0.25) < 0.02
            assert abs(counts[source, label, "valid"] / n - 0.15) < 0.02


def test_make_split_keeps_existing_splits_and_joins_their_groups() -> None:
    records = synthetic({"a": 40})
    given = ImageRecord(Path("/data/given.jpg"), 0, "a", "a/real/g0", "test")
    split = make_split([given, *records], test_fraction=0.0, valid_fraction=0.0)
    assert split[0] is given
    # The unsplit image of group a/real/g0 joins its group's existing split.
    assert {r.split for r in split if r.group == "a/real/g0"} == {"test"}
    assert {r.split for r in split if r.group != "a/real/g0"} == {"train"}


def test_make_split_group_across_strata_assigned_once() -> None:
    records = []
    for i in range(30):  # the same person in two sources, e.g. two copies of an FFHQ photo
        records.append(ImageRecord(Path(f"/x/a/{i}.jpg"), 0, "a", f"person{i}"))
        records.append(ImageRecord(Path(f"/x/b/{i}.jpg"), 0, "b", f"person{i}"))
    split = make_split(records, seed=1)
    check_groups(split)
    assert len({r.split for r in split}) == 3


def test_make_split_tiny_strata_keep_train() -> None:
    for n in (1, 2, 3):
        split = make_split(synthetic({"s": n}), valid_fraction=0.45, test_fraction=0.5)
        for label in (0, 1):
            assert "train" in {r.split for r in split if r.label == label}


@pytest.mark.parametrize(
    ("valid", "test"), [(-0.1, 0.2), (0.1, 1.0), (0.5, 0.5), (float("nan"), 0)]
)
def test_make_split_rejects_bad_fractions(valid: float, test: float) -> None:
    with pytest.raises(ValueError):
        make_split(synthetic({"a": 3}), valid_fraction=valid, test_fraction=test)


def test_make_split_rejects_records_that_already_straddle() -> None:
    a = ImageRecord(Path("/a.jpg"), 0, "s", "g", "train")
    b = ImageRecord(Path("/b.jpg"), 0, "s", "g", "test")
    with pytest.raises(DataError, match="straddle"):
        make_split([a, b])


# ---------------------------------------------------------------------------------------------
# check_groups, select, sample_balanced, count_table


def test_check_groups_catches_a_straddle() -> None:
    records = [
        ImageRecord(Path("/1.jpg"), 0, "s", "g1", "train"),
        ImageRecord(Path("/2.jpg"), 0, "s", "g1", "train"),
        ImageRecord(Path("/3.jpg"), 1, "s", "g2", "valid"),
        ImageRecord(Path("/4.jpg"), 1, "s", "g2", None),  # unsplit: not a straddle
    ]
    check_groups(records)
    records.append(ImageRecord(Path("/5.jpg"), 0, "s", "g1", "test"))
    with pytest.raises(DataError, match="1 group.*'g1' in train, test"):
        check_groups(records)


def test_select() -> None:
    records = make_split(synthetic({"a": 10}))
    assert {r.split for r in select(records, "valid")} == {"valid"}
    assert sum(len(select(records, s)) for s in datasets.SPLITS) == len(records)
    with pytest.raises(ValueError, match="unknown split 'val'"):
        select(records, "val")


def test_sample_balanced_exact_balance_and_proportional_sources() -> None:
    records = synthetic({"a": 300, "b": 100})
    sample = sample_balanced(records, 200, seed=0)
    assert Counter(r.label for r in sample) == {0: 100, 1: 100}
    assert Counter((r.source, r.label) for r in sample) == {
        ("a", 0): 75,
        ("a", 1): 75,
        ("b", 0): 25,
        ("b", 1): 25,
    }
    assert len(set(sample)) == 200  # without replacement


def test_sample_balanced_odd_n_gives_the_extra_to_real() -> None:
    sample = sample_balanced(synthetic({"a": 10}), 7)
    assert Counter(r.label for r in sample) == {0: 4, 1: 3}


def test_sample_balanced_is_seeded_and_order_independent() -> None:
    records = synthetic({"a": 100, "b": 50})
    shuffled = records[::-1]
    assert sample_balanced(records, 40, seed=5) == sample_balanced(shuffled, 40, seed=5)
    assert sample_balanced(records, 40, seed=5) != sample_balanced(records, 40, seed=6)


def test_sample_balanced_too_many() -> None:
    records = synthetic({"a": 10})[:15]  # 10 real, 5 fake
    with pytest.raises(DataError, match="asked for 6 fake images, but there are only 5"):
        sample_balanced(records, 12)
    assert len(sample_balanced(records, 10)) == 10


def test_count_table() -> None:
    records = make_split(synthetic({"b": 10, "a": 10}))
    records.append(ImageRecord(Path("/z.jpg"), 1, "a", "z"))
    rows = count_table(records)
    assert [(row["source"], row["split"]) for row in rows] == [
        ("a", "train"),
        ("a", "valid"),
        ("a", "test"),
        ("a", None),
        ("b", "train"),
        ("b", "valid"),
        ("b", "test"),
    ]
    assert rows[0] == {"source": "a", "split": "train", "real": 7, "fake": 7}
    assert rows[3] == {"source": "a", "split": None, "real": 0, "fake": 1}


# ---------------------------------------------------------------------------------------------
# Split CSVs


def test_split_csv_round_trip(tmp_path: Path) -> None:
    records = make_split(synthetic({"a": 5}))
    records.append(ImageRecord(tmp_path / 'odd, name "q".jpg', 1, "a,b", "g,1"))  # unsplit
    # A file name that is not UTF-8 (Latin-1 bytes on a Linux disk) comes back byte for byte.
    records.append(ImageRecord(tmp_path / os.fsdecode(b"caf\xe9.jpg"), 0, "a", "g2", "train"))
    target = tmp_path / "out" / "split.csv"
    write_split_csv(records, target)
    assert target.read_bytes().splitlines()[0].decode() == ",".join(CSV_COLUMNS)
    assert read_split_csv(target) == records
    assert os.stat(target).st_mode & 0o777 == 0o644


def test_split_csv_write_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "split.csv"
    write_split_csv(synthetic({"a": 2}), target)
    before = target.read_bytes()

    def failing():
        yield from synthetic({"b": 2})
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_split_csv(failing(), target)
    assert target.read_bytes() == before  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["split.csv"]  # no temporary file left


def test_read_split_csv_relative_paths_from_the_csv_folder(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text(",".join(CSV_COLUMNS) + "\nimgs/a.jpg,1,fake,src,g,\n")
    [record] = read_split_csv(tmp_path / "s.csv")
    assert record == ImageRecord(tmp_path / "imgs" / "a.jpg", 1, "src", "g", None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("path,label,source\n", "expected header path,label,label_str"),
        ("", "got an empty file"),
        (",".join(CSV_COLUMNS) + "\n/a.jpg,1,real,s,g,train\n", "line 2: label '1'"),
        (",".join(CSV_COLUMNS) + "\n/a.jpg,2,fake,s,g,train\n", "line 2: label '2'"),
        (",".join(CSV_COLUMNS) + "\n/a.jpg,0,real,s,g,val\n", "unknown split 'val'"),
        (",".join(CSV_COLUMNS) + "\n/a.jpg,0,real,s\n", "expected 6 fields"),
        (",".join(CSV_COLUMNS) + "\n/a.jpg,0,real,s,,train\n", "empty path, source or group"),
    ],
)
def test_read_split_csv_errors(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "s.csv").write_text(body)
    with pytest.raises(DataError, match=message):
        read_split_csv(tmp_path / "s.csv")


def test_read_split_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_split_csv(tmp_path / "nope.csv")


def test_image_record_rejects_bad_label_and_split() -> None:
    with pytest.raises(ValueError):
        ImageRecord(Path("/a.jpg"), 2, "s", "g")
    with pytest.raises(ValueError):
        ImageRecord(Path("/a.jpg"), 0, "s", "g", "val")


# ---------------------------------------------------------------------------------------------
# The shared development data, when this machine has it


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data not available")
def test_shared_data_indexes_as_three_sources() -> None:
    records = index_dataset([SHARED_DATA])
    counts = Counter((r.source, r.label) for r in records)
    assert counts == {
        ("faces140k-extra", 0): 5000,
        ("faces140k-extra", 1): 4997,
        ("faces140k-sample", 0): 640,
        ("faces140k-sample", 1): 607,
        ("headshots-sg2", 0): 2000,
        ("headshots-sg2", 1): 2000,
    }


def test_a_folder_of_images_the_model_trained_on_says_why_they_are_left_out(tmp_path, caplog):
    from deepfake_detect.data.prepare import evaluation_records

    mine = tmp_path / "mine"
    trained, new = write_image(mine / "a.jpg"), write_image(mine / "b.jpg")
    model = tmp_path / "model"
    write_split_csv([ImageRecord(trained, 0, "mine", "mine/a", "train")], model / "split.csv")
    with caplog.at_level("WARNING", logger="deepfake_detect"):
        records = evaluation_records([mine], "test", model, label=0)
    assert [r.path for r in records] == [new]  # never trained on: a test image
    assert "1 of 2 images are in the model's recorded split outside test" in caplog.text
    new.unlink()
    with pytest.raises(DataError, match=r"all 1 are in the model's recorded split elsewhere"):
        evaluation_records([mine], "test", model, label=0)
