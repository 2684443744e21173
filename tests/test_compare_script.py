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
