"""scripts/sweep.py: candidates are trained side by side, ranked on validation, stopped at a
deadline, and checked against a committed split manifest. `deepfake-detect` is replaced by a
stand-in that writes what the real commands write, so the test takes seconds."""

import csv
import json
import sys
from pathlib import Path

import pytest
from conftest import load_script

# The stand-in: `train` writes history.csv and split.csv (sleeping for --finetune-epochs
# seconds); `evaluate` writes valid75/metrics.json, source a's AUC being the run's --lr.
FAKE_CLI = """\
import json, sys, time
from pathlib import Path
args = sys.argv[1:]
opt = lambda name: args[args.index(name) + 1]
if args[0] == "train":
    run = Path(opt("--output"))
    run.mkdir(parents=True)
    (run / "options.json").write_text(json.dumps({"lr": opt("--lr")}))
    (run / "history.csv").write_text("epoch,val_auc\\n1,0.5\\n")
    fake_split = opt("--seed")  # the candidates file passes the split of the fake image here
    rows = ["path,split", "/data/a/real/1.png,train", "/data/a/fake/2.jpg," + fake_split]
    (run / "split.csv").write_text("\\n".join(rows) + "\\n")
    time.sleep(float(opt("--finetune-epochs")))
else:
    run = Path(opt("--model"))
    auc = float(json.loads((run / "options.json").read_text())["lr"])
    out = Path(opt("--output"))
    out.mkdir()
    per = {"a": {"accuracy": 0.9, "roc_auc": auc}, "b": {"accuracy": 0.8, "roc_auc": 0.95}}
    metrics = {"accuracy": 0.85, "roc_auc": 0.9, "per_source": per}
    (out / "metrics.json").write_text(json.dumps(metrics))
"""


@pytest.fixture(scope="module")
def sweep():
    return load_script("sweep")


@pytest.fixture
def fake_exe(tmp_path):
    script = tmp_path / "fake_cli.py"
    script.write_text(FAKE_CLI)
    exe = tmp_path / "deepfake-detect"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    exe.chmod(0o755)
    return exe


def write_candidates(path: Path, candidates: dict[str, list[str]]) -> Path:
    path.write_text(json.dumps({"base": ["--seed", "valid"], "candidates": candidates}))
    return path


def test_ranks_by_the_weakest_source_and_stops_at_the_deadline(sweep, fake_exe, tmp_path, capsys):
    spec = write_candidates(
        tmp_path / "candidates.json",
        {
            "weak": ["--lr", "0.90", "--finetune-epochs", "0"],
            "strong": ["--lr", "0.99", "--finetune-epochs", "0"],
            "slow": ["--lr", "0.99", "--finetune-epochs", "60"],
            "late": ["--lr", "0.99", "--finetune-epochs", "0"],
        },
    )
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,split\na/real/1.png,train\na/fake/2.jpg,valid\n")
    out = tmp_path / "sweep"
    argv = ["--data", "/data", "--out", str(out), "--candidates", str(spec), "--exe", str(fake_exe),
            "--parallel", "3", "--deadline", "4", "--expect-split", str(manifest)]  # fmt: skip
    assert sweep.main(argv) == 0

    runs = json.loads((out / "summary.json").read_text())["runs"]
    assert runs["strong"]["score"] == 0.95  # the lower of a (0.99) and b (0.95)
    assert runs["weak"]["score"] == 0.90
    assert runs["strong"]["per_source"] == {"a": [0.9, 0.99], "b": [0.8, 0.95]}
    assert runs["strong"]["split_differs"] == 0
    assert runs["slow"]["status"].startswith("rc ")  # stopped at the deadline, not waited for
    assert runs["late"]["status"] == "not started"  # no slot before the deadline
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in table] == ["strong", "weak", "slow", "late"]


def test_split_differences_counts_moved_and_extra_images(sweep, tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,split\ns/real/1.png,train\ns/fake/2.jpg,test\n")
    run_split = tmp_path / "split.csv"
    with run_split.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerows([["path", "split"], ["/x/s/real/1.png", "train"],
                          ["/x/s/fake/2.jpg", "valid"], ["/x/s/fake/3.jpg", "train"]])  # fmt: skip
    assert sweep.split_differences(run_split, manifest) == 2


@pytest.mark.parametrize(
    ("content", "only", "message"),
    [
        (None, None, "No such file"),
        ("{not json", None, "Expecting property name"),
        ('{"base": []}', None, "needs a 'base' list of options and a 'candidates' object"),
        ('{"base": [], "candidates": {"a": []}}', ["b"], "no candidate named b"),
    ],
)
def test_a_bad_candidates_file_is_one_line_and_starts_nothing(
    sweep, tmp_path, capsys, content, only, message
):
    spec = tmp_path / "candidates.json"
    if content is not None:
        spec.write_text(content)
    out = tmp_path / "sweep"
    argv = ["--data", "/data", "--out", str(out), "--candidates", str(spec)]
    assert sweep.main(argv + (["--only", *only] if only else [])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (Path(__file__).parents[1] / "scripts").glob("sweep*.json"))
)
def test_every_committed_candidates_file_makes_valid_train_options(
    sweep, name, tmp_path, monkeypatch
):
    """A candidate with a misspelt option or a bad value would only fail once its run started."""
    from typer.testing import CliRunner

    import deepfake_detect.training
    from deepfake_detect.cli import app

    seen = []

    def no_training(options):
        seen.append(options)  # built and checked by TrainOptions, as a real run's would be
        raise SystemExit(0)

    monkeypatch.setattr(deepfake_detect.training, "train", no_training)
    base, candidates = sweep.read_candidates(Path(__file__).parents[1] / "scripts" / name, None)
    for own in candidates.values():
        args = ["train", *base, *own, "--data", str(tmp_path), "--output", str(tmp_path / "run")]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    assert len(seen) == len(candidates)
