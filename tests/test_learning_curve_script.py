"""scripts/learning_curve_report.py and plots.plot_learning_curve: the curve's table and plot."""

from __future__ import annotations

import json

import pytest
from conftest import load_script
from PIL import Image

from deepfake_detect.data.datasets import ImageRecord, write_split_csv


def fake_run(root, name, n_extra_kept, auc):
    """A run folder as train_learning_curve.sh leaves it: split, options, two evaluations."""
    run = root / name
    (run / "eval-valid-q75").mkdir(parents=True)
    (run / "eval-test-q75").mkdir()
    records = [ImageRecord(root / f"s{i}.png", i % 2, "faces140k-sample", f"a{i}", "train")
               for i in range(6)]  # fmt: skip
    records += [ImageRecord(root / f"e{i}.png", i % 2, "faces140k-extra", f"b{i}", "train")
                for i in range(10)]  # fmt: skip
    records += [ImageRecord(root / f"h{i}.png", i % 2, "headshots-sg2", f"c{i}", "train")
                for i in range(4)]  # fmt: skip
    write_split_csv(records, run / "split.csv")
    sizes = [] if n_extra_kept is None else [f"faces140k-extra={n_extra_kept}"]
    (run / "options.json").write_text(json.dumps({"source_train_size": sizes}))
    for split, shift in (("valid", 0.0), ("test", -0.01)):
        per_source = {
            s: {"roc_auc": auc + shift, "intervals": {"roc_auc": [auc - 0.02, auc + 0.01]}}
            for s in ("faces140k-sample", "faces140k-extra", "headshots-sg2")
        }
        (run / f"eval-{split}-q75" / "metrics.json").write_text(
            json.dumps({"per_source": per_source})
        )
    return run


def test_table_counts_the_kept_images_and_the_plot_is_drawn(tmp_path, capsys):
    script = load_script("learning_curve_report")
    runs = [fake_run(tmp_path, "a", 0, 0.90), fake_run(tmp_path, "b", 4, 0.95),
            fake_run(tmp_path, "c", None, 0.98)]  # fmt: skip
    assert [script.training_images(r, script.LIKE) for r in runs] == [6, 10, 16]
    plot = tmp_path / "curve.png"
    argv = [*map(str, reversed(runs)), "--plot", str(plot)]
    assert script.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| faces140k-like training images | validation ROC-AUC")
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| 6", "| 10", "| 16"]
    assert "0.900 [0.880, 0.910]" in lines[2] and "0.890" in lines[2]  # valid, then held out
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.width > 300


def test_a_run_without_its_evaluations_is_a_one_line_error(tmp_path, capsys):
    script = load_script("learning_curve_report")
    run = fake_run(tmp_path, "a", 0, 0.9)
    (run / "eval-test-q75" / "metrics.json").unlink()
    assert script.main([str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "run the evaluations first" in err
    assert script.main([str(run), "--sources", "nope"]) == 2
    assert "no source nope" in capsys.readouterr().err


def test_plot_learning_curve_accepts_points_without_intervals(tmp_path):
    from deepfake_detect.evaluation.plots import plot_learning_curve

    plot_learning_curve({"x": [(100, 0.9, None), (200, 0.95, [0.9, 0.97])]}, tmp_path / "a.png")
    plot_learning_curve({}, tmp_path / "empty.png")
    assert (tmp_path / "a.png").stat().st_size > 0 and (tmp_path / "empty.png").is_file()
    with pytest.raises(ValueError):
        plot_learning_curve({"x": [(100, 0.9, None)]}, tmp_path / "a.bad-format")
