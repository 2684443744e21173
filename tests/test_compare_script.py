"""scripts/compare_models.py: the paired bootstrap behind the README's model comparisons."""

from pathlib import Path

import numpy as np
import pytest
from conftest import load_script

from deepfake_detect.data.manifest import MANIFEST_NAME, read_manifest
from deepfake_detect.inference.detector import BUNDLED_DIR

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def compare():
    return load_script("compare_models")


def test_identical_models_differ_by_nothing(compare):
    rng = np.random.default_rng(1)
    labels, scores = rng.integers(0, 2, 200), rng.random(200)
    assert compare.paired_auc_difference(labels, scores, scores, n_resamples=200) == (0, 0, 0)


def test_a_clearly_better_model_has_an_interval_above_zero(compare):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 300)
    good = labels + rng.normal(0, 0.5, 300)  # AUC about 0.92
    poor = labels + rng.normal(0, 2.0, 300)  # AUC about 0.64
    diff, low, high = compare.paired_auc_difference(labels, good, poor, n_resamples=500)
    assert 0 < low < diff < high
    diff, low, high = compare.paired_auc_difference(labels, poor, good, n_resamples=500)
    assert low < diff < high < 0


def test_one_class_is_an_error(compare):
    with pytest.raises(ValueError, match="both classes"):
        compare.paired_auc_difference([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not here")
def test_compares_two_models_on_the_images_of_a_manifest(compare, tmp_path, capsys):
    rows = read_manifest(BUNDLED_DIR / MANIFEST_NAME)
    picked = [r for r in rows if r.split == "valid" and r.source == "faces140k-sample"]
    picked = [r for r in picked if r.label == 0][:4] + [r for r in picked if r.label == 1][:4]
    manifest = tmp_path / MANIFEST_NAME
    lines = ["path,sha256,label,source,group,split"]
    lines += [f"{r.path},{r.sha256},{'fake' if r.label else 'real'},{r.source},{r.group},valid"
              for r in picked]  # fmt: skip
    manifest.write_text("\n".join(lines) + "\n")
    bundled = str(BUNDLED_DIR)
    argv = [bundled, bundled, "--data", str(SHARED_DATA), "--manifest", str(manifest)]
    assert compare.main(argv) == 0
    out = capsys.readouterr().out
    assert "faces140k-sample" in out and "8 images  +0.0000 [+0.0000, +0.0000]" in out


def test_bad_inputs_are_one_line_errors(compare, tmp_path, capsys):
    bundled = str(BUNDLED_DIR)
    empty = tmp_path / MANIFEST_NAME
    empty.write_text("path,sha256,label,source,group,split\n")
    cases = [
        ([str(tmp_path / "nope"), bundled, "--data", str(tmp_path)], "model not found"),
        ([bundled, bundled, "--data", str(tmp_path / "nope")], "no such data folder"),
        ([bundled, bundled, "--data", str(tmp_path), "--manifest", str(empty)], "no images"),
        ([bundled, bundled, "--data", str(tmp_path), "--scale", "9"], "--scale must be within"),
    ]
    for argv, message in cases:
        assert compare.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_images_can_arrive_at_another_size_before_their_re_encoding(tmp_path):
    import io

    from PIL import Image

    from deepfake_detect.data.datasets import ImageRecord
    from deepfake_detect.evaluation.runs import reencoded, score_records

    Image.new("RGB", (40, 20), (10, 200, 30)).save(tmp_path / "a.png")
    record = ImageRecord(tmp_path / "a.png", 0, "s", "g")
    for scale, size in ((0.5, (20, 10)), (2.0, (80, 40)), (1.0, (40, 20))):
        (data,) = reencoded([record], 90, scale)
        with Image.open(io.BytesIO(data)) as image:
            assert (image.format, image.size) == ("JPEG", size)
    with pytest.raises(ValueError, match="needs a JPEG quality"):
        score_records(None, [record], scale=2.0)


def _write_scores(path, rows):
    lines = ["path,source,label,score"] + [",".join(map(str, row)) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def test_pairs_two_score_files_by_path_whatever_their_order(compare, tmp_path, capsys):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 120)
    good, poor = labels + rng.normal(0, 0.5, 120), labels + rng.normal(0, 2.0, 120)
    rows_a = [(f"s/{i}.jpg", "s", labels[i], good[i]) for i in range(120)]
    rows_b = [(f"s/{i}.jpg", "s", labels[i], poor[i]) for i in range(120)][::-1]
    _write_scores(tmp_path / "a.csv", rows_a)
    _write_scores(tmp_path / "b.csv", rows_b)
    got_labels, sources, (a, b) = compare.read_paired_scores(tmp_path / "a.csv", tmp_path / "b.csv")
    assert (got_labels == labels).all() and (sources == "s").all()
    assert np.allclose(a, good) and np.allclose(b, poor)
    argv = ["--from-scores", str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]
    assert compare.main(argv) == 0
    line = capsys.readouterr().out.splitlines()[1]
    diff, low, high = compare.paired_auc_difference(labels, good, poor)
    assert line.split() == ["s", "120", "images", f"{diff:+.4f}", f"[{low:+.4f},", f"{high:+.4f}]"]
    assert low > 0


def test_score_files_that_do_not_pair_are_one_line_errors(compare, tmp_path, capsys):
    _write_scores(tmp_path / "a.csv", [("x.jpg", "s", 0, 0.1), ("y.jpg", "s", 1, 0.9)])
    _write_scores(tmp_path / "other.csv", [("x.jpg", "s", 0, 0.1), ("z.jpg", "s", 1, 0.9)])
    _write_scores(tmp_path / "relabelled.csv", [("x.jpg", "s", 1, 0.1), ("y.jpg", "s", 1, 0.9)])
    _write_scores(tmp_path / "twice.csv", [("x.jpg", "s", 0, 0.1), ("x.jpg", "s", 0, 0.2)])
    _write_scores(tmp_path / "unscored.csv", [("x.jpg", "s", 0, ""), ("y.jpg", "s", 1, 0.9)])
    (tmp_path / "garbage.csv").write_text("a,b\n1,2\n")
    cases = [
        ("other.csv", "different images (2 in one only, first: y.jpg)"),
        ("relabelled.csv", "x.jpg: the files disagree about its source or label"),
        ("twice.csv", "x.jpg is listed twice"),
        ("unscored.csv", "x.jpg has no score"),
        ("garbage.csv", "not a scores file"),
        ("missing.csv", "unreadable"),
    ]
    for name, message in cases:
        argv = ["--from-scores", str(tmp_path / "a.csv"), str(tmp_path / name)]
        assert compare.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert compare.main([str(tmp_path / "a.csv"), str(tmp_path / "a.csv")]) == 2
    assert "--data is needed" in capsys.readouterr().err


def test_false_alarms_are_compared_at_each_models_threshold(compare, tmp_path, capsys):
    # 4 reals and 2 fakes: A calls 1 real fake at 0.5, B calls 3 at 0.2.
    a = [0.1, 0.2, 0.3, 0.6, 0.9, 0.8]
    b = [0.1, 0.3, 0.25, 0.4, 0.9, 0.8]
    labels = [0, 0, 0, 0, 1, 1]
    _write_scores(tmp_path / "a.csv", [(f"{i}.jpg", "s", y, v) for i, (y, v) in
                                       enumerate(zip(labels, a, strict=True))])  # fmt: skip
    _write_scores(tmp_path / "b.csv", [(f"{i}.jpg", "s", y, v) for i, (y, v) in
                                       enumerate(zip(labels, b, strict=True))])  # fmt: skip
    argv = ["--from-scores", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"),
            "--thresholds", "0.5", "0.2"]  # fmt: skip
    assert compare.main(argv) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.split()[:7] == ["s", "4", "reals", "25.0%", "-", "75.0%", "="]
    assert "-50.0 [" in line
    argv = [str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--thresholds", "0.5", "0.2"]
    assert compare.main(argv) == 2
    assert "--thresholds and --mean-logit go with --from-scores" in capsys.readouterr().err


def test_the_mean_logit_of_two_noisy_models_ranks_better_than_one(compare):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 600)
    logit_a = 2.0 * labels - 1 + rng.normal(0, 1.5, 600)  # independent errors
    logit_b = 2.0 * labels - 1 + rng.normal(0, 1.5, 600)
    a, b = 1 / (1 + np.exp(-logit_a / 1.5)), 1 / (1 + np.exp(-logit_b / 0.8))  # calibrated
    both = compare.mean_logit([a, b], (1.5, 0.8))
    assert np.allclose(both, 1 / (1 + np.exp(-(logit_a + logit_b) / 2)), atol=1e-6)
    diff, low, high = compare.paired_auc_difference(labels, both, a, n_resamples=500)
    assert low > 0
    raw = 1 / (1 + np.exp(-logit_a))  # a model with itself: its own uncalibrated score
    assert np.allclose(compare.mean_logit([a, a], (1.5, 1.5)), raw, atol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        compare.mean_logit([a, b], (1.5, 0.0))
