"""`compare`: backbones trained and evaluated under one protocol, in one table; resuming;
leave-one-source-out. Tiny backbones on the synthetic two-source data."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from conftest import tiny_options

from deepfake_detect.cli import main
from deepfake_detect.data.datasets import ImageRecord, read_split_csv
from deepfake_detect.data.prepare import drop_sources
from deepfake_detect.errors import DataError
from deepfake_detect.evaluation.comparison import COLUMNS, MARKDOWN_HEADER, paired_auc_difference
from deepfake_detect.training import comparison
from deepfake_detect.training.comparison import CompareOptions, compare

BACKBONES = ["test_efficientnet", "test_resnet"]
QUICK = dict(frozen_epochs=2, finetune_epochs=1)
# the same options on the command line (TINY of conftest with QUICK)
CLI_OPTIONS = [
    "--no-pretrained", "--image-size", "32", "--frozen-epochs", "2", "--finetune-epochs", "1",
    "--batch-size", "16", "--lr", "3e-3", "--finetune-lr", "1e-3", "--patience", "10",
    "--workers", "0",
]  # fmt: skip


def comparison_options(data: Path, output: Path, backbones=BACKBONES, **changes):
    return CompareOptions(
        tiny_options(data, output, **QUICK), list(backbones), speed_seconds=0, n_bootstrap=100,
        **changes,
    )  # fmt: skip


@pytest.fixture(scope="module")
def compared(multi_source_data, tmp_path_factory):
    output = tmp_path_factory.mktemp("compare") / "out"
    return output, compare(comparison_options(multi_source_data, output))


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def run_cli(args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["deepfake-detect", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_table_has_a_row_per_backbone_with_every_column(compared):
    output, result = compared
    rows = read_csv(output / "comparison.csv")
    assert list(rows[0]) == list(COLUMNS)
    assert [r["backbone"] for r in rows] == BACKBONES
    split = read_split_csv(output / "runs" / BACKBONES[0] / "split.csv")
    n_test = sum(r.split == "test" for r in split)
    for row in rows:
        assert row["tested_on"] == "test" and int(row["images"]) == n_test
        for name in ("accuracy", "f1", "roc_auc", "average_precision", "eer"):
            low, value, high = (float(row[f"{name}{end}"]) for end in ("_low", "", "_high"))
            assert 0 <= low <= value <= high <= 1 + 1e-9, name  # AP: sklearn rounds
        assert int(row["parameters"]) > 0 and float(row["gflops"]) > 0
        assert float(row["cpu_images_s"]) > 0 and float(row["training_minutes"]) > 0
    markdown = (output / "comparison.md").read_text().splitlines()
    assert markdown[0].startswith("Tested on the test split of ")
    assert markdown[2] == "| " + " | ".join(MARKDOWN_HEADER) + " |"
    assert [line.split(" | ")[0] for line in markdown[4:]] == [f"| {b}" for b in BACKBONES]
    evaluation = output / "runs" / BACKBONES[0] / "eval-test" / "metrics.json"
    assert result.rows[0]["roc_auc"] == json.loads(evaluation.read_text())["roc_auc"]


def test_the_first_backbone_differs_from_itself_by_nothing(compared):
    first, second = compared[1].rows
    assert (first["auc_difference"], first["auc_difference_low"]) == (0, 0)
    assert first["auc_difference_high"] == 0
    assert second["auc_difference"] == pytest.approx(second["roc_auc"] - first["roc_auc"])
    assert second["auc_difference_low"] <= second["auc_difference"] <= second["auc_difference_high"]


def test_the_chart_is_a_png(compared):
    output, result = compared
    assert result.files[2] == output / "comparison.png"
    assert (output / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_same_command_again_trains_nothing(compared, multi_source_data, capsys, monkeypatch):
    output, _ = compared
    state = output / "runs" / BACKBONES[1] / "state.json"
    before = state.stat().st_mtime_ns

    def no_training(options):
        raise AssertionError(f"{options.output} trained again")

    monkeypatch.setattr(comparison, "train", no_training)
    args = ["compare", "--data", str(multi_source_data), "--output", str(output),
            "--backbones", ",".join(BACKBONES), *CLI_OPTIONS]  # fmt: skip
    code, out, err = run_cli(args, capsys, monkeypatch)
    assert code == 0, err
    assert "| test_resnet | test |" in out and "comparison.png" in err
    assert state.stat().st_mtime_ns == before
    assert [r["backbone"] for r in read_csv(output / "comparison.csv")] == BACKBONES


def test_a_finished_run_with_other_options_is_refused(compared, multi_source_data):
    output, _ = compared
    options = comparison_options(multi_source_data, output)
    options.training.frozen_epochs = 3
    with pytest.raises(DataError, match="frozen_epochs 2 -> 3"):
        compare(options)


def test_an_unfinished_run_is_resumed(multi_source_data, tmp_path, monkeypatch):
    started = tmp_path / "runs" / BACKBONES[0]
    started.mkdir(parents=True)
    (started / "options.json").write_text("{}")  # what a run writes before its first epoch
    given = []

    def stop(options):
        given.append(options)
        raise KeyboardInterrupt

    monkeypatch.setattr(comparison, "train", stop)
    with pytest.raises(KeyboardInterrupt):
        compare(comparison_options(multi_source_data, tmp_path))
    assert given[0].resume and given[0].output == started and given[0].backbone == BACKBONES[0]
    with pytest.raises(KeyboardInterrupt):
        compare(comparison_options(multi_source_data, tmp_path, backbones=BACKBONES[1:]))
    assert not given[1].resume


def test_leave_one_source_out_trains_without_it_and_tests_on_it(multi_source_data, tmp_path):
    result = compare(comparison_options(multi_source_data, tmp_path, [BACKBONES[0]],
                                        leave_out=["beta"]))  # fmt: skip
    run = tmp_path / "runs" / "without-beta" / BACKBONES[0]
    assert {r.source for r in read_split_csv(run / "split.csv")} == {"alpha"}
    assert json.loads((run / "options.json").read_text())["exclude_sources"] == ["beta"]
    assert json.loads((run / "config.json").read_text())["training"]["exclude_sources"] == ["beta"]
    scored = read_csv(run / "eval-beta" / "scores.csv")
    assert {r["source"] for r in scored} == {"beta"} and len(scored) == 80  # all of beta
    (row,) = result.rows
    assert (row["tested_on"], row["images"], row["auc_difference"]) == ("beta (left out)", 80, 0)
    assert "every image of the source left out" in (tmp_path / "comparison.md").read_text()


def test_leaving_a_source_out_drops_its_near_duplicates_in_other_sources(tmp_path):
    def record(source, name, group, label=0):
        return ImageRecord(tmp_path / source / name, label, source, group)

    records = [record("alpha", "a", "dup-1"), record("beta", "b", "dup-1"),
               record("alpha", "c", "alpha/c", 1), record("beta", "d", "beta/d", 1)]  # fmt: skip
    assert [r.path.name for r in drop_sources(records, ["beta"])] == ["c"]
    assert drop_sources(records, []) == records
    with pytest.raises(DataError, match="no source named 'gamma' to leave out"):
        drop_sources(records, ["gamma"])


def test_paired_difference_is_the_scripts(multi_source_data):
    """scripts/compare_models.py uses the library's paired bootstrap, not a copy."""
    from conftest import load_script

    assert load_script("compare_models").paired_auc_difference is paired_auc_difference


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backbones", "test_efficientnet,nope"], "unknown backbone 'nope'"),
        (["--backbones", ","], "--backbones: give at least one backbone name"),
        (["--backbones", "test_resnet,test_resnet"], "--backbones: a name is given twice"),
        (["--backbones", "test_resnet", "--leave-out", "gamma"], "no source named 'gamma'"),
        (["--backbones", "test_resnet", "--eval-split", "train"], "--eval-split must be valid"),
    ],
    ids=["unknown-backbone", "empty-list", "twice", "unknown-source", "split"],
)
def test_bad_options_are_one_line_errors(
    multi_source_data, tmp_path, capsys, monkeypatch, args, message
):
    base = ["compare", "--data", str(multi_source_data), "--output", str(tmp_path / "out")]
    code, _, err = run_cli([*base, *args, *CLI_OPTIONS], capsys, monkeypatch)
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_leaving_out_the_only_source_is_refused(multi_source_data, tmp_path, capsys, monkeypatch):
    args = ["compare", "--data", str(multi_source_data / "alpha"), "--output", str(tmp_path),
            "--backbones", "test_resnet", "--leave-out", "alpha", *CLI_OPTIONS]  # fmt: skip
    code, _, err = run_cli(args, capsys, monkeypatch)
    assert code == 2 and "--leave-out alpha: no other source left to train on" in err, err
