"""scripts/subsample_source.py: the bundled split as a folder layout, one source thinned."""

import random

import pytest
from conftest import load_script, write_class_folders

from deepfake_detect.data.datasets import index_dataset, make_split
from deepfake_detect.data.manifest import manifest_rows, write_manifest


@pytest.fixture(scope="module")
def script():
    return load_script("subsample_source")


@pytest.fixture
def data_and_manifest(tmp_path):
    data = tmp_path / "data"
    write_class_folders(data / "alpha", 40, seed=1)
    write_class_folders(data / "beta", 20, seed=2, fmt="JPEG")
    records = make_split(index_dataset([data]), valid_fraction=0.2, test_fraction=0.2, seed=0)
    manifest = tmp_path / "split_manifest.csv"
    write_manifest(manifest_rows(records, data), manifest)
    return data, manifest, records


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def names_in(records, source, split, label):
    return sorted(
        r.path.name
        for r in records
        if (r.source, r.split, r.path.parent.name) == (source, split, label)
    )


def test_thins_one_source_keeps_the_split_and_leaves_out_the_held_out_images(
    script, data_and_manifest, tmp_path
):
    data, manifest, records = data_and_manifest
    out = tmp_path / "half"
    argv = [str(data), str(out), "--source", "alpha", "--keep", "0.5", "--seed", "1"]
    assert script.main([*argv, "--manifest", str(manifest)]) == 0
    for source, label in [("alpha", "real"), ("alpha", "fake"), ("beta", "real")]:
        train = names_in(records, source, "train", label)
        got = names(out / source / "train" / label)
        assert len(got) == (round(0.5 * len(train)) if source == "alpha" else len(train))
        assert set(got) <= set(train)
    assert names(out / "alpha" / "valid" / "real") == names_in(records, "alpha", "valid", "real")
    assert not list(out.rglob("test"))  # the held-out images stay out of reach
    # the layout is what train reads as a split of its own
    indexed = index_dataset([out])
    assert {r.split for r in indexed} == {"train", "valid"}
    # the draw of docs/experiments.md's seventh round: Random(seed * 10 + 4) over the names, sorted
    train_real = names_in(records, "alpha", "train", "real")
    dropped = random.Random(14).sample(train_real, len(train_real) - round(0.5 * len(train_real)))
    assert names(out / "alpha" / "train" / "real") == sorted(set(train_real) - set(dropped))
    again = tmp_path / "again"
    argv_again = [str(data), str(again), "--source", "alpha", "--keep", "0.5", "--seed", "1"]
    assert script.main([*argv_again, "--manifest", str(manifest)]) == 0
    assert names(again / "alpha" / "train" / "real") == names(out / "alpha" / "train" / "real")


def test_a_changed_image_is_one_line_and_leaves_nothing(
    script, data_and_manifest, tmp_path, capsys
):
    data, manifest, records = data_and_manifest
    victim = next(r.path for r in records if r.split == "valid")
    victim.write_bytes(victim.read_bytes() + b"\0")
    out = tmp_path / "out"
    argv = [str(data), str(out), "--source", "beta", "--keep", "1", "--manifest", str(manifest)]
    assert script.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "sha256" in err and "\n" not in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--keep", "0"], "--keep"), (["--keep", "1.5"], "--keep"),
     (["--keep", "0.5", "--source", "gamma"], "no source named"),
     (["--keep", "0.01"], "keeps no")],
)  # fmt: skip
def test_bad_options_are_one_line(script, data_and_manifest, tmp_path, capsys, extra, message):
    data, manifest, _ = data_and_manifest
    argv = [str(data), str(tmp_path / "o"), "--source", "alpha", "--manifest", str(manifest)]
    assert script.main([*argv, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_output_inside_the_data_or_under_a_missing_folder_is_refused(
    script, data_and_manifest, tmp_path, capsys
):
    data, manifest, _ = data_and_manifest
    cases = [
        (data, data / "thinned", "inside the data folder"),
        (data, tmp_path / "no" / "out", "no such folder"),
        (tmp_path / "nodata", tmp_path / "out", "no such folder"),
    ]
    for root, out, message in cases:
        argv = [str(root), str(out), "--source", "alpha", "--keep", "0.5"]
        assert script.main([*argv, "--manifest", str(manifest)]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()
    assert not (tmp_path / "no").exists()
