"""The command line, in process: Kaggle layout end to end, output files, one-line errors."""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from pathlib import Path

import pytest
from conftest import synthetic_image

from deepfake_detect.cli import main
from deepfake_detect.cli.common import MALLOC_ENVIRONMENT, MALLOC_VARIABLES, glibc

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
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # a folder like mkdir's, not private
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 40 and metrics["accuracy"] >= 0.9
    for key in ("loss", "roc_auc", "average_precision", "eer", "tpr_at_1pct_fpr", "intervals",
                "confusion_matrix", "per_class", "macro", "threshold", "model",
                "model_version", "weights_sha256"):  # fmt: skip
        assert key in metrics


def test_a_failed_evaluate_write_leaves_the_report_folder_as_it_was(
    kaggle_run, kaggle_root, tmp_path, capsys, monkeypatch
):
    import errno

    from deepfake_detect.evaluation import runs

    def full_disk(labels, scores, path):  # the ROC figure, after the report's text is written
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    args = ["evaluate", "--model", str(kaggle_run), "--data", str(kaggle_root)]
    fresh, old = tmp_path / "fresh", tmp_path / "old"
    assert run_cli([*args, "--output", str(old)], capsys, monkeypatch)[0] == 0
    before = {f.name: f.read_bytes() for f in old.iterdir()}
    monkeypatch.setattr(runs, "plot_roc", full_disk)
    for out in (fresh, old):
        code, _, err = run_cli([*args, "--output", str(out), "--threshold", "0.9"],
                               capsys, monkeypatch)  # fmt: skip
        assert code != 0
        assert f"{out / 'roc.png'}: No space left on device" in err  # the file, not a hidden one
    assert not fresh.exists()  # no half-written report
    assert {f.name: f.read_bytes() for f in old.iterdir()} == before  # not one file changed


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
    threshold = json.loads((kaggle_run / "config.json").read_text())["threshold"]
    if suffix == ".csv":
        with open(out) as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["path", "score", "label", "error", "provenance", "threshold"]
        assert {float(r["threshold"]) for r in rows} == {threshold}
    elif suffix == ".json":
        document = json.loads(out.read_text())
        header, rows = document, document.pop("predictions")
    else:
        header, *rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 21
    good = [r for r in rows if not r["error"]]
    assert len(good) == 20 and sum(r["label"] == "fake" for r in good) >= 18
    assert all(0 <= float(r["score"]) <= 1 for r in good)
    failed = [r for r in rows if r["error"]]
    assert failed[0]["path"] == str(bad) and failed[0]["score"] in ("", None)
    if suffix != ".csv":  # the model and its threshold once, in the header, not in every row
        assert header["threshold"] == threshold and header["weights_sha256"] and header["model"]
        assert all(set(r) == {"path", "score", "label", "error", "provenance"} for r in rows)


def test_predict_without_output_prints_a_table(kaggle_run, kaggle_root, capsys, monkeypatch):
    image = next((kaggle_root / "real_vs_fake" / "real-vs-fake" / "test" / "real").iterdir())
    code, stdout, stderr = run_cli(
        ["predict", str(image), "--model", str(kaggle_run)], capsys, monkeypatch
    )
    assert code == 0
    # notes: the error, the face and frame, warnings and what the file claims, as they apply
    assert stdout.splitlines()[0].split() == ["path", "score", "label", "threshold", "notes"]
    threshold = json.loads((kaggle_run / "config.json").read_text())["threshold"]
    assert str(image) in stdout and f"{threshold:.4f}" in stdout.splitlines()[1]
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
        (["predict", "x.jpg", "--max-pixels", "0"], "--max-pixels must be a positive"),
        (["predict", "x.jpg", "--output", "-", "--format", "xml"], "--format must be one of"),
        (["evaluate", "--data", ".", "--output", "o", "--label", "both"], "--label must be"),
        (["train", "--data", ".", "--output", "o", "--figure-history", "2"], "--figure-history"),
        (["train", "--data", ".", "--output", "o", "--reencode", "jpeg:60-95", "--grid-shift", "2"],
         "--grid-shift"),
        (["train", "--data", ".", "--output", "o", "--grid-shift", "0.5"], "--grid-shift"),
        (["train", "--data", ".", "--output", "o", "--fake-only", "/nonexistent"], "/nonexistent"),
        (["predict", "x.jpg", "--workers", "-1"], "--workers must be 0 or more, got -1"),
        (["predict", "x.jpg", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        # refused before the dataset is indexed, not after
        (["evaluate", "--data", ".", "--output", "o", "--threshold", "2"],
         "threshold must be within [0, 1], got 2.0"),
        (["evaluate", "--data", ".", "--output", "o", "--jpeg-quality", "0"],
         "--jpeg-quality must be within 1-100, got 0"),
        (["evaluate", "--data", ".", "--output", "o", "--batch-size", "0"],
         "--batch-size must be at least 1, got 0"),
        (["calibrate", "--data", ".", "--output", "o", "--batch-size", "0"],
         "--batch-size must be at least 1, got 0"),
        (["audit", "--data", ".", "--workers", "0"], "--workers must be at least 1, got 0"),
        (["benchmark", "--seconds", "inf"], "--seconds must be a positive number"),
        (["benchmark", "--seconds", "nan"], "--seconds must be a positive number"),
        (["benchmark", "--memory-files", "-1,10"], "counts must be at least 1"),
        (["serve", "--max-upload-mb", "nan"], "--max-upload-mb must be a positive number"),
        (["serve", "--host", "999.1.1.1"], "--host 999.1.1.1: "),
        (["serve", "--engine", "torch", "--precision", "int8"], "int8 needs --engine onnx"),
        (["serve", "--model", "m.onnx", "--engine", "torch"], "scores with --engine onnx only"),
        (["explain", "x.jpg", "--output", "h.png", "--model", "m.onnx"],
         "explain needs a model folder"),
    ],
)
def test_bad_input_is_one_line(args, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("deepfake_detect.inference.detector.BUNDLED_DIR", tmp_path / "no-bundle")
    code, out, err = run_cli(args, capsys, monkeypatch)
    assert code == 2 and out == ""  # refused before a table header or a row is written
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


# --- a new user's first hour (each test failed before its fix) --------------------------------


def test_no_arguments_print_the_help_and_exit_0(capsys, monkeypatch):
    code, stdout, err = run_cli([], capsys, monkeypatch)
    assert code == 0 and "Usage: deepfake-detect" in stdout and "predict" in stdout
    assert "error" not in err


def test_help_shows_flags_as_flags(capsys, monkeypatch):
    code, stdout, _ = run_cli(["audit", "--help"], capsys, monkeypatch)
    assert code == 0 and "<bool>" not in stdout
    strict = next(line for line in stdout.splitlines() if "--strict" in line)
    assert strict.split()[:2] == ["--strict", "Exit"]  # no value after the flag


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_before_or_after_the_command_leaves_only_the_requested_output(
    where, kaggle_run, kaggle_root, tmp_path, capsys, monkeypatch
):
    image = next((kaggle_root / "real_vs_fake" / "real-vs-fake" / "test" / "real").iterdir())
    args = ["predict", str(image), "--model", str(kaggle_run), "--output", "-"]
    args = ["-q", *args] if where == "before" else [*args, "--quiet"]
    code, stdout, err = run_cli(args, capsys, monkeypatch)
    assert code == 0 and err == ""
    assert stdout.splitlines()[0] == "path,score,label,error,provenance,threshold"
    assert len(stdout.splitlines()) == 2
    code, stdout, err = run_cli(
        ["evaluate", "--model", str(kaggle_run), "--data", str(kaggle_root), "--output",
         str(tmp_path / "eval"), "-q"], capsys, monkeypatch,
    )  # fmt: skip
    assert code == 0 and stdout == "" and err == ""
    assert (tmp_path / "eval" / "metrics.json").is_file()


def test_predict_writes_jsonl_to_stdout_for_piping(kaggle_run, kaggle_root, capsys, monkeypatch):
    folder = kaggle_root / "real_vs_fake" / "real-vs-fake" / "test" / "real"
    code, stdout, _ = run_cli(
        ["predict", str(folder), "--model", str(kaggle_run), "--output", "-", "--format",
         "jsonl"], capsys, monkeypatch,
    )  # fmt: skip
    header, *rows = [json.loads(line) for line in stdout.splitlines()]
    assert code == 0 and "threshold" in header and len(rows) == 20
    code, _, err = run_cli(
        ["predict", str(folder), "--output", "s.csv", "--format", "json"], capsys, monkeypatch
    )
    assert code == 2 and "contradicts" in err


def test_predict_names_the_files_it_skipped(kaggle_run, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "mixed"
    folder.mkdir()
    image = synthetic_image(__import__("numpy").random.default_rng(0), False)
    image.save(folder / "a.jfif", "JPEG")
    (folder / "notes.txt").write_text("not an image")
    code, stdout, err = run_cli(
        ["predict", str(folder), "--model", str(kaggle_run)], capsys, monkeypatch
    )
    assert code == 0 and "a.jfif" in stdout
    assert err.strip() == (
        f"1 image: {stdout.count(' fake ')} fake, {stdout.count(' real ')} real, 0 failed; "
        f"1 other file skipped as not images, first: {folder / 'notes.txt'}"
    )



def test_a_link_to_a_missing_image_gets_an_error_row(kaggle_run, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "links"
    folder.mkdir()
    synthetic_image(__import__("numpy").random.default_rng(0), False).save(folder / "a.jpg")
    (folder / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    code, stdout, err = run_cli(
        ["predict", str(folder), "--model", str(kaggle_run)], capsys, monkeypatch
    )
    assert code == 1  # an input failed, and says why; not skipped as if it were no image
    assert f"{folder / 'gone.jpg'}: no such file" in stdout and "skipped" not in err

def read_only_folder(path: Path) -> Path:
    """A folder no file can be created in, even by root (chmod alone does not stop root)."""
    import os
    import subprocess

    path.mkdir()
    path.chmod(0o555)
    if os.access(path, os.W_OK):
        made = subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
        if not made:
            path.chmod(0o755)
            pytest.skip("cannot make a read-only folder here")
    return path


@pytest.mark.parametrize("command", ["predict", "evaluate", "audit", "train"])
def test_an_unwritable_output_is_refused_before_any_work(
    command, kaggle_run, kaggle_root, tmp_path, capsys, monkeypatch
):
    """predict DIR --output ro/s.csv once scored for minutes, then failed and lost the scores."""
    import subprocess

    ro = read_only_folder(tmp_path / "ro")
    image = next(kaggle_root.rglob("*.jpg"))
    scored = []
    monkeypatch.setattr("deepfake_detect.inference.Detector.score",
                        lambda *a, **k: scored.append(1) or [])  # fmt: skip
    args = {
        "predict": ["predict", str(image), "--model", str(kaggle_run), "--output", f"{ro}/s.csv"],
        "evaluate": ["evaluate", "--data", str(kaggle_root), "--model", str(kaggle_run),
                     "--output", f"{ro}/eval"],
        "audit": ["audit", "--data", str(image.parent), "--output", f"{ro}/a.json"],
        "train": ["train", "--data", str(kaggle_root), "--backbone", "test_efficientnet",
                  "--no-pretrained", "--no-audit", "--output", f"{ro}/run"],
    }[command]  # fmt: skip
    try:
        code, _, err = run_cli(args, capsys, monkeypatch)
        assert list(ro.iterdir()) == []
    finally:
        subprocess.run(["chattr", "-i", str(ro)], capture_output=True)
        ro.chmod(0o755)
    assert code == 2 and f"cannot write in {ro}" in err and len(err.strip().splitlines()) == 1
    assert not scored


def test_predict_and_evaluate_show_progress_on_a_terminal_only(
    kaggle_run, kaggle_root, tmp_path, capsys, monkeypatch
):
    folder = kaggle_root / "real_vs_fake" / "real-vs-fake" / "test" / "real"
    predict = ["predict", str(folder), "--model", str(kaggle_run), "--output", "-"]
    evaluate = ["evaluate", "--model", str(kaggle_run), "--data", str(kaggle_root)]
    _, _, err = run_cli(predict, capsys, monkeypatch)
    assert "img/s" not in err and "it/s" not in err  # not a terminal: no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    for args in (predict, [*evaluate, "--output", str(tmp_path / "e1")]):
        _, _, err = run_cli(args, capsys, monkeypatch)
        assert "scoring" in err and "img/s" in err and re.search(r"\d+/(20|40) ", err)
    _, _, err = run_cli([*evaluate, "--output", str(tmp_path / "e2"), "-q"], capsys, monkeypatch)
    assert err == ""


@pytest.mark.parametrize(
    ("command", "note"),
    [("predict", "nothing written"),
     ("train", "no epoch had completed: nothing kept"),  # its run folder was never made
     ("train-on", "a training run keeps every epoch it completed: continue it with --resume"),
     ("compare", "a comparison keeps every epoch and evaluation it completed: run it again to "
      "continue")],
)
@pytest.mark.parametrize("how", ["KeyboardInterrupt", "Abort"])  # Abort: older Typer, click
def test_ctrl_c_is_one_line_and_status_130(command, note, how, tmp_path, capsys, monkeypatch):
    import click

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt if how == "KeyboardInterrupt" else click.exceptions.Abort()

    monkeypatch.setattr("deepfake_detect.inference.load_detector", interrupt)
    monkeypatch.setattr("deepfake_detect.training.train", interrupt)
    monkeypatch.setattr("deepfake_detect.training.comparison.compare", interrupt)
    args = {
        "predict": ["predict", "x.jpg"],
        "train": ["train", "--data", str(tmp_path), "--output", str(tmp_path / "run")],
        "train-on": ["train", "--data", str(tmp_path), f"--output={tmp_path / 'kept'}"],
        "compare": ["compare", "--data", str(tmp_path), "--output", str(tmp_path / "cmp"),
                    "--backbones", "test_efficientnet"],
    }[command]
    (tmp_path / "kept").mkdir()  # a run folder with its epochs, as far as the note can tell
    code, _, err = run_cli(args, capsys, monkeypatch)
    assert code == 130 and err.strip() == f"interrupted; {note}"


def test_a_bad_pixel_limit_in_the_environment_is_refused_before_any_output(
    capsys, monkeypatch, tmp_path
):
    import numpy as np

    from deepfake_detect.data import images

    monkeypatch.setenv("DEEPFAKE_DETECT_MAX_PIXELS", "abc")
    monkeypatch.setattr(images, "_ENV_AT_IMPORT", "abc")  # as in a process started with it
    image = tmp_path / "x.png"
    synthetic_image(np.random.default_rng(0), fake=False).save(image)
    code, out, err = run_cli(["predict", str(image), "--output", "-"], capsys, monkeypatch)
    assert code == 2 and out == ""  # no CSV header before the error
    assert err.strip() == (
        "error: DEEPFAKE_DETECT_MAX_PIXELS='abc': expected a positive number of pixels"
    )


def test_max_pixels_raises_or_lowers_the_limit_for_one_command(
    kaggle_run, kaggle_root, capsys, monkeypatch
):
    image = next((kaggle_root / "real_vs_fake" / "real-vs-fake" / "test" / "real").iterdir())
    predict = ["predict", str(image), "--model", str(kaggle_run)]
    code, stdout, _ = run_cli([*predict, "--max-pixels", "100"], capsys, monkeypatch)
    assert code == 1 and "over the limit of 100" in stdout
    code, stdout, _ = run_cli(predict, capsys, monkeypatch)  # the next command: the default
    assert code == 0 and "over the limit" not in stdout


def test_evaluate_a_folder_of_real_photos_only_reports_false_alarms(
    kaggle_run, tmp_path, capsys, monkeypatch
):
    import numpy as np

    folder = tmp_path / "real-photos" / "nested"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(9)
    for i in range(12):
        synthetic_image(rng, False).save(folder / f"{i}.jpg", "JPEG", quality=95)
    out = tmp_path / "eval"
    code, stdout, err = run_cli(
        ["evaluate", "--model", str(kaggle_run), "--data", str(tmp_path / "real-photos"),
         "--label", "real", "--output", str(out)], capsys, monkeypatch,
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 12 and metrics["n_fake"] == 0
    hits, total = metrics["false_alarm_rate_count"]
    assert total == 12 and metrics["false_alarm_rate"] == hits / 12
    assert len(metrics["false_alarm_rate_interval"]) == 2 and metrics["roc_auc"] is None
    assert "reals called fake" in stdout and (out / "reliability.png").is_file()
    code, _, err = run_cli(
        ["evaluate", "--data", str(tmp_path), "--label", "both", "--output", str(out)],
        capsys, monkeypatch,
    )  # fmt: skip
    assert code == 2 and "--label must be real or fake" in err


MALLOC = """
import ctypes, resource, sys, threading
import numpy as np
from PIL import Image
from deepfake_detect.cli.common import tune_malloc
from deepfake_detect.data.images import to_tensor_array
print(tune_malloc() if sys.argv[1] == "tuned" else "left", flush=True)
image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), np.uint8))
to_tensor_array(image, (0.5,) * 3, (0.5,) * 3)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # the arrays of one image after another, as scoring makes them
    to_tensor_array(image, (0.5,) * 3, (0.5,) * 3)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20, flush=True)
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
ready, held = threading.Barrier(4), []
def allocate():
    ready.wait()  # all four alive at once, as decoding and ONNX Runtime threads are
    held.append(libc.malloc(64 * 1024))
threads = [threading.Thread(target=allocate) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc.malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not glibc(), reason="glibc only")
@pytest.mark.parametrize(
    ("how", "environment", "answer", "tuned"),
    [("tuned", {}, "True", True), ("left", {}, "left", False),
     ("tuned", {"MALLOC_ARENA_MAX": "4"}, "False", False),
     ("tuned", {"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}, "False", False),
     ("left", MALLOC_ENVIRONMENT, "left", True)],  # serve's worker processes
)  # fmt: skip
def test_scoring_commands_tune_malloc(how, environment, answer, tuned):
    """Tuned: one arena for every thread, and an image's arrays reuse the last one's memory
    instead of faulting in fresh pages (about 350 faults per 256 px image with glibc's
    adaptive thresholds, a handful tuned), by mallopt or by the environment that `serve`
    passes to its workers. A user's malloc variable leaves glibc alone."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in MALLOC_VARIABLES} | environment
    result = subprocess.run(
        [sys.executable, "-c", MALLOC, how], capture_output=True, text=True, env=env, check=True
    )
    arenas = re.findall(r"^Arena \d+:", result.stderr, flags=re.MULTILINE)
    told, faults = result.stdout.split()
    assert told == answer
    assert (len(arenas) == 1) == tuned, result.stderr
    assert float(faults) < 20 if tuned else float(faults) > 100


def test_predict_and_evaluate_tune_malloc(
    kaggle_run, kaggle_root, tmp_path, capsys, monkeypatch
):
    calls = []
    for command in ("predict", "evaluate"):
        monkeypatch.setattr(
            f"deepfake_detect.cli.{command}.tune_malloc", lambda c=command: calls.append(c)
        )
    image = next(kaggle_root.rglob("*.jpg"))
    model = ["--model", str(kaggle_run)]
    assert run_cli(["-q", "predict", str(image), *model], capsys, monkeypatch)[0] == 0
    report = ["--data", str(kaggle_root), "--output", str(tmp_path / "report")]
    assert run_cli(["-q", "evaluate", *model, *report], capsys, monkeypatch)[0] == 0
    assert calls == ["predict", "evaluate"]


def test_serve_tunes_malloc_for_itself_and_its_workers(kaggle_run, capsys, monkeypatch):
    import os

    import uvicorn

    from deepfake_detect.serving.settings import SETTINGS_ENV

    for name in (*MALLOC_ENVIRONMENT, SETTINGS_ENV):  # serve sets them; teardown removes them
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    seen = {}
    monkeypatch.setattr("deepfake_detect.cli.serve.tune_malloc", lambda: True)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: seen.update(os.environ))
    args = ["serve", "--model", str(kaggle_run), "--workers", "2"]
    assert run_cli(args, capsys, monkeypatch)[0] == 0
    assert {name: seen.get(name) for name in MALLOC_ENVIRONMENT} == MALLOC_ENVIRONMENT
