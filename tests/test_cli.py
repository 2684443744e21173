"""The command line, in process: Kaggle layout end to end, output files, one-line errors."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from conftest import synthetic_image

from deepfake_detect.cli import main

KAGGLE_HEADER = ",original_path,id,label,label_str,path"


def run_cli(args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["deepfake-detect", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def kaggle_root(tmp_path_factory) -> Path:
    """The Kaggle 140k layout with CSVs whose numeric label is 1 for real, as in the original."""
    import numpy as np

    root = tmp_path_factory.mktemp("kaggle")
    images = root / "real_vs_fake" / "real-vs-fake"
    rng = np.random.default_rng(5)
    counts = {"train": 60, "valid": 20, "test": 20}
    for split, n in counts.items():
        rows = [KAGGLE_HEADER]
        for i in range(n):
            for name, label in (("real", 1), ("fake", 0)):
                relative = f"{split}/{name}/{name}{i:03d}.jpg"
                (images / split / name).mkdir(parents=True, exist_ok=True)
                synthetic_image(rng, name == "fake").save(images / relative, "JPEG", quality=95)
                rows.append(f"{len(rows) - 1},/kaggle/{relative},{i},{label},{name},{relative}")
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def kaggle_run(kaggle_root, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("kaggle-run") / "run"
    args = ["train", "--data", str(kaggle_root), "--output", str(run_dir),
            "--backbone", "test_efficientnet", "--no-pretrained", "--image-size", "32",
            "--frozen-epochs", "2", "--finetune-epochs", "6", "--batch-size", "16",
            "--lr", "3e-3", "--finetune-lr", "1e-3", "--patience", "10", "--workers", "0",
            "--train-size", "100"]  # fmt: skip
    pytest.MonkeyPatch().setattr(sys, "argv", ["deepfake-detect", *args])
    try:
        main()
    except SystemExit as exc:
        assert not exc.code
    return run_dir


def test_kaggle_training_uses_its_splits_and_label_str(kaggle_run):
    config = json.loads((kaggle_run / "config.json").read_text())
    assert config["metrics"]["accuracy"] >= 0.9  # inverted labels would give about 0
    assert config["metrics"]["n_images"] == 40  # the valid.csv images
    assert not (kaggle_run / "split.csv").exists()  # the dataset's own split was used


def test_evaluate_prints_a_table_and_writes_files(
    kaggle_run, kaggle_root, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "eval"
    code, stdout, _ = run_cli(
        ["evaluate", "--model", str(kaggle_run), "--data", str(kaggle_root), "--output", str(out)],
        capsys, monkeypatch,
    )  # fmt: skip
    assert code == 0
    assert "accuracy" in stdout.lower()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 40 and metrics["accuracy"] >= 0.9
    for key in ("loss", "roc_auc", "average_precision", "eer", "tpr_at_1pct_fpr", "intervals",
                "confusion_matrix", "per_class", "macro", "threshold", "model",
                "model_version", "weights_sha256"):  # fmt: skip
        assert key in metrics


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl"])
def test_predict_writes_each_format(kaggle_run, kaggle_root, tmp_path, capsys, monkeypatch, suffix):
    folder = kaggle_root / "real_vs_fake" / "real-vs-fake" / "test" / "fake"
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    out = tmp_path / f"predictions{suffix}"
    code, _, err = run_cli(
        ["predict", str(folder), str(bad), "--model", str(kaggle_run), "--output", str(out)],
        capsys, monkeypatch,
    )  # fmt: skip
    assert code == 1  # one input failed
    assert "21 images" in err and "1 failed" in err
    if suffix == ".csv":
        with open(out) as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["path", "score", "label", "error"]
    elif suffix == ".json":
        rows = json.loads(out.read_text())["predictions"]
    else:
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 21
    good = [r for r in rows if not r["error"]]
    assert len(good) == 20 and sum(r["label"] == "fake" for r in good) >= 18
    assert all(0 <= float(r["score"]) <= 1 for r in good)
    failed = [r for r in rows if r["error"]]
    assert failed[0]["path"] == str(bad) and failed[0]["score"] in ("", None)
    if suffix != ".csv":
        assert all(r["weights_sha256"] and r["model"] for r in rows)


def test_predict_without_output_prints_a_table(kaggle_run, kaggle_root, capsys, monkeypatch):
    image = next((kaggle_root / "real_vs_fake" / "real-vs-fake" / "test" / "real").iterdir())
    code, stdout, stderr = run_cli(
        ["predict", str(image), "--model", str(kaggle_run)], capsys, monkeypatch
    )
    assert code == 0
    assert stdout.splitlines()[0].split() == ["path", "score", "label", "error"]
    assert str(image) in stdout
    assert stderr.startswith("1 image: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "x.jpg"], "no bundled model"),
        (["predict", "x.jpg", "--model", "/nonexistent"], "model not found"),
        (["predict", "x.jpg", "--model", ".", "--output", "out.txt"], "--output must end in"),
        (["train", "--data", "/nonexistent", "--output", "o"], "/nonexistent"),
        (["evaluate", "--data", ".", "--output", "o", "--split", "dev"], "--split"),
        (["predict", "x.jpg", "--device", "gpu"], "--device"),
        (["train", "--data", ".", "--output", "o", "--head", "big"], "--head"),
        (["train", "--data", ".", "--output", "o", "--reencode", "png:1-5"], "--reencode"),
        (["audit", "--data", "/nonexistent"], "/nonexistent"),
        (["train", "--output", "o"], "Missing option '--data'"),
        (["evaluate", "--data", ".", "--output", "o", "--bogus", "x"], "No such option: --bogus"),
        (["predict", "x.jpg", "--threshold", "abc"], "Invalid value for '--threshold'"),
        (["audit", "--data"], "requires an argument"),
    ],
)
def test_bad_input_is_one_line(args, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("deepfake_detect.inference.BUNDLED_DIR", tmp_path / "no-bundle")
    code, _, err = run_cli(args, capsys, monkeypatch)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize(
    ("command", "output", "message"),
    [
        ("predict", "taken.csv", "is a folder; give a file name"),
        ("predict", "afile/out.csv", "afile is a file, not a folder"),
        ("audit", "taken.json", "is a folder; give a file name"),
        ("audit", "afile/report.json", "afile is a file, not a folder"),
        ("evaluate", "afile", "exists and is not a folder"),
        ("evaluate", "report", "metrics.json there is a folder; remove it first"),
        ("train", "afile", "exists and is not a folder"),
        ("train", "afile/run", "afile is a file, not a folder"),
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_any_work(
    command, output, message, kaggle_run, kaggle_root, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    for folder in ("taken.csv", "taken.json", "report/metrics.json"):
        (tmp_path / folder).mkdir(parents=True)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    image = next(kaggle_root.rglob("*.jpg"))
    args = {
        "predict": ["predict", str(image), "--model", str(kaggle_run)],
        "audit": ["audit", "--data", str(image.parent)],
        "evaluate": ["evaluate", "--data", str(kaggle_root), "--model", str(kaggle_run)],
        "train": ["train", "--data", str(kaggle_root), "--backbone", "test_efficientnet",
                  "--no-pretrained", "--no-audit"],
    }[command]  # fmt: skip
    code, _, err = run_cli([*args, "--output", output], capsys, monkeypatch)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_predict_on_an_empty_folder_is_an_error(kaggle_run, tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(["predict", str(empty), "--model", str(kaggle_run)], capsys, monkeypatch)
    assert code == 2 and "holds no images" in err


def test_version_names_the_licence(capsys, monkeypatch):
    code, stdout, _ = run_cli(["--version"], capsys, monkeypatch)
    assert code == 0 and "deepfake-detect" in stdout and "Apache-2.0" in stdout


def test_audit_of_a_dataset_with_no_readable_image_fails(tmp_path, capsys, monkeypatch):
    for label, content in (("real", b"not an image"), ("fake", b"")):
        (tmp_path / label).mkdir()
        (tmp_path / label / "x.jpg").write_bytes(content)
    code, out, err = run_cli(
        ["audit", "--data", str(tmp_path), "--output", str(tmp_path / "a.json")],
        capsys,
        monkeypatch,
    )
    assert code == 2 and "no image could be read (2 unreadable" in err
    assert "unreadable:" in out and not (tmp_path / "a.json").exists()
