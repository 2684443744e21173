"""Tests for deepfake_detect.evaluation.metrics and .plots against hand-computed values."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from deepfake_detect.evaluation.metrics import (
    CLASS_NAMES,
    binary_cross_entropy,
    bootstrap_intervals,
    brier_score,
    choose_threshold,
    classification_report_text,
    compute_metrics,
    equal_error_rate,
    expected_calibration_error,
    format_summary_table,
    recalibrated_threshold,
    select_threshold,
    tpr_at_fpr,
)
from deepfake_detect.evaluation.plots import plot_confusion_matrix, plot_roc, plot_training_curves

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Two reals, two fakes; at threshold 0.5 one of each is wrong.
# AUC by hand over (fake, real) pairs: 0.4>0.1 yes, 0.4>0.6 no, 0.9>0.1 yes, 0.9>0.6 yes -> 3/4.
SMALL_LABELS = [0, 0, 1, 1]
SMALL_SCORES = [0.1, 0.6, 0.4, 0.9]

# Asymmetric case: predictions at 0.5 are [0, 1, 0, 1, 0].
# Reals: 2 right (0.2, 0.1), 1 wrong (0.7). Fakes: 1 right (0.8), 1 wrong (0.3).
# AUC: 0.8 beats all 3 reals, 0.3 beats 0.2 and 0.1 -> 5/6.
ASYM_LABELS = [0, 0, 0, 1, 1]
ASYM_SCORES = [0.2, 0.7, 0.1, 0.8, 0.3]


def _png_ok(path) -> bool:
    """The file exists, is non-trivial and starts with the PNG signature."""
    data = path.read_bytes()
    return len(data) > 100 and data.startswith(PNG_SIGNATURE)


def _no_warnings(func, *args, **kwargs):
    """Call func and fail on any warning (e.g. sklearn's undefined-metric warnings)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return func(*args, **kwargs)


# --- point metrics -------------------------------------------------------------------------


def test_small_case_by_hand():
    m = compute_metrics(SMALL_LABELS, SMALL_SCORES, 0.5, n_bootstrap=50)
    assert m["confusion_matrix"] == [[1, 1], [1, 1]]
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    assert m["roc_auc"] == pytest.approx(0.75)
    for name in CLASS_NAMES:
        assert m["per_class"][name] == pytest.approx(
            {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
        )
    assert (m["n_images"], m["n_real"], m["n_fake"]) == (4, 2, 2)
    # ROC points: (0,0) (0,.5) (.5,.5) (.5,1) (1,1); FNR = FPR exactly at (.5,.5).
    assert m["eer"] == pytest.approx(0.5)
    assert m["tpr_at_1pct_fpr"] == pytest.approx(0.5)
    # AP: ranking 0.9(fake) 0.6(real) 0.4(fake) 0.1(real) -> (1/2)*1 + (1/2)*(2/3).
    assert m["average_precision"] == pytest.approx(0.5 + 1 / 3)


def test_asymmetric_case_by_hand():
    m = compute_metrics(ASYM_LABELS, ASYM_SCORES, 0.5, n_bootstrap=0)
    assert m["confusion_matrix"] == [[2, 1], [1, 1]]
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["roc_auc"] == pytest.approx(5 / 6)
    real, fake = m["per_class"]["real"], m["per_class"]["fake"]
    assert (real["precision"], real["recall"], real["f1"]) == pytest.approx((2 / 3,) * 3)
    assert (fake["precision"], fake["recall"], fake["f1"]) == pytest.approx((0.5,) * 3)
    assert (real["support"], fake["support"]) == (3, 2)
    assert m["macro"] == pytest.approx({"precision": 7 / 12, "recall": 7 / 12, "f1": 7 / 12})
    assert m["intervals"] == {
        "accuracy": None, "roc_auc": None, "ece": None, "brier": None,
        "level": 0.95, "n_resamples": 0,
    }  # fmt: skip


def test_threshold_is_inclusive():
    # A score equal to the threshold is predicted fake.
    m = compute_metrics([0, 1], [0.5, 0.5], 0.5, n_bootstrap=0)
    assert m["confusion_matrix"] == [[0, 1], [0, 1]]


def test_perfect_separation():
    labels = [0, 0, 0, 1, 1, 1]
    scores = [0.0, 0.1, 0.2, 0.7, 0.8, 1.0]
    m = compute_metrics(labels, scores, 0.5, n_bootstrap=100)
    assert m["roc_auc"] == 1.0
    assert m["average_precision"] == 1.0
    assert m["eer"] == 0.0
    assert m["tpr_at_1pct_fpr"] == 1.0
    assert m["accuracy"] == 1.0
    assert m["intervals"]["accuracy"] == [1.0, 1.0]


def test_binary_cross_entropy_by_hand():
    expected = -(math.log(0.8) + math.log(0.9)) / 2
    assert binary_cross_entropy([0, 1], [0.2, 0.9]) == pytest.approx(expected, rel=1e-9)


def test_binary_cross_entropy_clips_certain_mistakes():
    loss = binary_cross_entropy([1, 0], [0.0, 1.0], eps=1e-7)
    assert math.isfinite(loss)
    assert loss == pytest.approx(-math.log(1e-7), rel=1e-6)


def test_equal_error_rate_interpolates_on_ties():
    # Tied scores give one diagonal ROC segment from (0,0) to (1,1); FNR = FPR at its middle.
    assert equal_error_rate([0, 1], [0.5, 0.5]) == pytest.approx(0.5)


def test_tpr_at_fpr_is_a_step_reading():
    assert tpr_at_fpr(SMALL_LABELS, SMALL_SCORES, fpr=0.49) == pytest.approx(0.5)
    assert tpr_at_fpr(SMALL_LABELS, SMALL_SCORES, fpr=0.5) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        tpr_at_fpr(SMALL_LABELS, SMALL_SCORES, fpr=1.5)


# --- threshold choice ----------------------------------------------------------------------


def test_choose_threshold_known_best():
    labels = [0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.35, 0.4, 0.8]
    t = choose_threshold(labels, scores)
    assert type(t) is float
    assert t == pytest.approx(0.35)
    assert compute_metrics(labels, scores, t, n_bootstrap=0)["balanced_accuracy"] == 1.0


def test_choose_threshold_tie_goes_to_closest_to_half():
    # 0.4 and 0.9 both give balanced accuracy 0.75; 0.4 is closer to 0.5.
    assert choose_threshold(SMALL_LABELS, SMALL_SCORES) == pytest.approx(0.4)


def test_choose_threshold_can_predict_everything_real():
    # Inverted scores: predicting all fake (t=0.2) and all real (t just above 0.3) both give
    # balanced accuracy 0.5; the latter is nearer 0.5, so the candidate above the max wins.
    t = choose_threshold([0, 1], [0.3, 0.2])
    assert 0.3 < t < 0.3 + 1e-9
    assert compute_metrics([0, 1], [0.3, 0.2], t, n_bootstrap=0)["confusion_matrix"] == [
        [1, 0],
        [1, 0],
    ]


def test_choose_threshold_single_class():
    assert choose_threshold([0, 0, 0], [0.2, 0.9, 0.4]) == 0.5
    assert choose_threshold([1, 1], [0.2, 0.9]) == 0.5


def _noisy_scores(rng, n, shift=0.0):
    """Balanced labels and calibrated-looking scores: logits N(+-2, 1), moved by `shift`."""
    labels = rng.integers(0, 2, n)
    logits = rng.normal(0.0, 1.0, n) + np.where(labels == 1, 2.0, -2.0) + shift
    return labels, 1.0 / (1.0 + np.exp(-logits))


def test_recalibrated_threshold_is_where_the_fit_says_half():
    rng = np.random.default_rng(0)
    labels, scores = _noisy_scores(rng, 20_000)
    assert recalibrated_threshold(labels, scores) == pytest.approx(0.5, abs=0.01)
    # every logit moved up by 1: the threshold follows to sigmoid(1)
    labels, scores = _noisy_scores(rng, 20_000, shift=1.0)
    assert recalibrated_threshold(labels, scores) == pytest.approx(1 / (1 + math.exp(-1)), abs=0.01)


def test_recalibrated_threshold_weighs_the_classes_equally():
    """Three times as many reals as fakes do not pull the threshold towards the fakes."""
    rng = np.random.default_rng(1)
    labels, scores = _noisy_scores(rng, 40_000)
    fakes = np.flatnonzero(labels == 1)[: int((labels == 1).sum() / 3)]
    keep = (labels == 0) | np.isin(np.arange(labels.size), fakes)
    assert recalibrated_threshold(labels[keep], scores[keep]) == pytest.approx(0.5, abs=0.02)


def test_recalibrated_threshold_is_steadier_than_the_arg_max():
    """Resampling the validation images moves it far less than the maximum of balanced
    accuracy (docs/experiments.md, "A steadier threshold rule")."""
    rng = np.random.default_rng(2)
    labels, scores = _noisy_scores(rng, 600)
    picks = [rng.integers(0, labels.size, labels.size) for _ in range(200)]
    spread = {
        rule: np.std([select_threshold(labels[p], scores[p], rule) for p in picks])
        for rule in ("recalibrated", "max-balanced")
    }
    assert spread["recalibrated"] < 0.7 * spread["max-balanced"]


def test_recalibrated_threshold_falls_back_where_no_fit_exists():
    # separable classes: the logistic fit has no finite answer; the arg-max is as good as any
    assert recalibrated_threshold([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == choose_threshold(
        [0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]
    )
    # fakes ranked below reals: no increasing recalibration, so the arg-max's answer
    inverted = ([0, 0, 0, 1, 1, 1], [0.9, 0.7, 0.4, 0.6, 0.3, 0.1])
    assert recalibrated_threshold(*inverted) == choose_threshold(*inverted)
    assert recalibrated_threshold([1, 1, 1], [0.2, 0.9, 0.4]) == 0.5


def test_select_threshold_names_its_rules():
    labels, scores = [0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.35, 0.4, 0.8]
    assert select_threshold(labels, scores, "max-balanced") == choose_threshold(labels, scores)
    with pytest.raises(ValueError, match="unknown threshold rule 'median'"):
        select_threshold(labels, scores, "median")


# --- single class and JSON safety ----------------------------------------------------------


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_is_defined_and_json_safe(label):
    labels = [label] * 5
    scores = [0.1, 0.4, 0.6, 0.8, 0.3]
    m = _no_warnings(compute_metrics, labels, scores, 0.5, n_bootstrap=200)
    text = json.dumps(m, allow_nan=False)  # raises on NaN/inf anywhere
    assert "NaN" not in text
    assert m["accuracy"] == pytest.approx(3 / 5 if label == 0 else 2 / 5)
    for key in ("roc_auc", "average_precision", "eer", "tpr_at_1pct_fpr"):
        assert m[key] is None
    assert m["intervals"]["roc_auc"] is None
    assert m["intervals"]["accuracy"] is not None
    # The absent class was never right: precision/recall/F1 fall back to 0.0, not NaN.
    absent = CLASS_NAMES[1 - label]
    assert m["per_class"][absent] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert equal_error_rate(labels, scores) is None
    assert tpr_at_fpr(labels, scores) is None


def test_never_predicted_class_has_zero_precision():
    m = _no_warnings(compute_metrics, [0, 1, 1], [0.1, 0.2, 0.3], 0.9, n_bootstrap=0)
    assert m["per_class"]["fake"]["precision"] == 0.0
    assert m["per_class"]["fake"]["recall"] == 0.0
    json.dumps(m, allow_nan=False)


def test_returned_types_are_plain_python():
    m = compute_metrics(ASYM_LABELS, np.array(ASYM_SCORES, dtype=np.float32), 0.5, n_bootstrap=20)

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        else:
            assert value is None or type(value) in (int, float), (value, type(value))

    walk(m)


# --- bootstrap -----------------------------------------------------------------------------


def _noisy_data(n=400, seed=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1)
    return labels, scores


def test_bootstrap_contains_point_estimates():
    labels, scores = _noisy_data()
    m = compute_metrics(labels, scores, 0.5, n_bootstrap=500, seed=1)
    for key in ("accuracy", "roc_auc", "ece", "brier"):
        lo, hi = m["intervals"][key]
        assert lo <= m[key] <= hi
        assert 0.0 <= lo < hi <= 1.0
    assert m["intervals"]["n_resamples"] == 500
    assert m["intervals"]["level"] == 0.95


def test_bootstrap_is_deterministic_with_seed():
    labels, scores = _noisy_data()
    a = bootstrap_intervals(labels, scores, 0.5, n_resamples=300, seed=7)
    b = bootstrap_intervals(labels, scores, 0.5, n_resamples=300, seed=7)
    c = bootstrap_intervals(labels, scores, 0.5, n_resamples=300, seed=8)
    assert a == b
    assert a != c


def test_bootstrap_auc_matches_sklearn_resamples():
    from sklearn.metrics import roc_auc_score

    labels, scores = _noisy_data(n=60)
    scores = np.round(scores, 1)  # many ties
    n_resamples = 200
    rng = np.random.default_rng(0)
    idx = rng.integers(0, labels.size, size=(n_resamples, labels.size))
    aucs = [roc_auc_score(labels[i], scores[i]) for i in idx if 0 < labels[i].sum() < labels.size]
    expected = np.percentile(aucs, [2.5, 97.5])
    got = bootstrap_intervals(labels, scores, 0.5, n_resamples=n_resamples, seed=0)
    assert got["roc_auc"] == pytest.approx(list(expected))


def test_bootstrap_calibration_intervals_match_recomputed_resamples():
    labels, scores = _noisy_data(n=80)
    scores[:32] = np.linspace(0.0, 1.0, 16).repeat(2)  # on every bin edge, 0 and 1 included
    n_resamples = 150
    rng = np.random.default_rng(0)
    idx = rng.integers(0, labels.size, size=(n_resamples, labels.size))
    eces = [expected_calibration_error(labels[i], scores[i]) for i in idx]
    briers = [brier_score(labels[i], scores[i]) for i in idx]
    got = bootstrap_intervals(labels, scores, 0.5, n_resamples=n_resamples, seed=0)
    assert got["ece"] == pytest.approx(list(np.percentile(eces, [2.5, 97.5])))
    assert got["brier"] == pytest.approx(list(np.percentile(briers, [2.5, 97.5])))


def test_bootstrap_skips_resamples_without_both_classes():
    # One fake among many reals: roughly a third of resamples lack it, yet AUC is defined.
    labels = [0] * 9 + [1]
    scores = [0.05 * i for i in range(9)] + [0.9]
    got = _no_warnings(bootstrap_intervals, labels, scores, 0.5, n_resamples=200, seed=0)
    assert got["roc_auc"] == [1.0, 1.0]


def test_bootstrap_rejects_bad_settings():
    with pytest.raises(ValueError):
        bootstrap_intervals([0, 1], [0.2, 0.8], 0.5, n_resamples=0)
    with pytest.raises(ValueError):
        bootstrap_intervals([0, 1], [0.2, 0.8], 0.5, level=1.0)


# --- validation ----------------------------------------------------------------------------

INVALID_INPUTS = [
    pytest.param([0, 2], [0.1, 0.2], "labels", id="label-2"),
    pytest.param([0, -1], [0.1, 0.2], "labels", id="label-negative"),
    pytest.param([0, 0.5], [0.1, 0.2], "labels", id="label-fraction"),
    pytest.param([0, 1], [0.1, 1.5], "scores", id="score-above-1"),
    pytest.param([0, 1], [-0.1, 0.5], "scores", id="score-negative"),
    pytest.param([0, 1], [0.1, float("nan")], "scores", id="score-nan"),
    pytest.param([0, 1], [0.1, float("inf")], "scores", id="score-inf"),
    pytest.param([], [], "empty", id="empty"),
    pytest.param([0, 1, 1], [0.1, 0.2], "length", id="length-mismatch"),
    pytest.param([[0, 1]], [[0.1, 0.2]], "one-dimensional", id="two-dimensional"),
]

FUNCTIONS = [
    pytest.param(lambda y, s: compute_metrics(y, s), id="compute_metrics"),
    pytest.param(binary_cross_entropy, id="binary_cross_entropy"),
    pytest.param(choose_threshold, id="choose_threshold"),
    pytest.param(equal_error_rate, id="equal_error_rate"),
    pytest.param(tpr_at_fpr, id="tpr_at_fpr"),
    pytest.param(lambda y, s: bootstrap_intervals(y, s, 0.5), id="bootstrap_intervals"),
    pytest.param(lambda y, s: classification_report_text(y, s, 0.5), id="report"),
]


@pytest.mark.parametrize("func", FUNCTIONS)
@pytest.mark.parametrize(("labels", "scores", "message"), INVALID_INPUTS)
def test_invalid_inputs_raise_value_error(func, labels, scores, message):
    with pytest.raises(ValueError, match=message):
        func(labels, scores)


def test_invalid_threshold():
    with pytest.raises(ValueError, match="threshold"):
        compute_metrics([0, 1], [0.2, 0.8], float("nan"))


def test_accepts_numpy_and_bool_labels():
    m = compute_metrics(np.array([False, True]), np.array([0.2, 0.8]), 0.5, n_bootstrap=0)
    assert m["accuracy"] == 1.0


# --- text output ---------------------------------------------------------------------------


def test_classification_report_names_classes():
    text = classification_report_text(ASYM_LABELS, ASYM_SCORES, 0.5)
    assert "real" in text and "fake" in text
    assert "0.6667" in text  # real precision with 4 digits


def test_summary_table_contains_values():
    m = compute_metrics(ASYM_LABELS, ASYM_SCORES, 0.5, n_bootstrap=100)
    table = format_summary_table(m)
    assert "0.6000" in table  # accuracy
    assert "0.8333" in table  # ROC-AUC
    lo, hi = m["intervals"]["accuracy"]
    assert f"[{lo:.4f}, {hi:.4f}]" in table
    assert "real" in table and "fake" in table


def test_summary_table_single_class_shows_na():
    m = compute_metrics([0, 0, 0], [0.1, 0.2, 0.9], 0.5, n_bootstrap=20)
    table = format_summary_table(m)
    assert "n/a" in table
    assert "0.6667" in table


# --- plots ---------------------------------------------------------------------------------


def test_plot_confusion_matrix(tmp_path):
    path = tmp_path / "nested" / "cm.png"  # parent is created
    plot_confusion_matrix([[5, 1], [2, 7]], path)
    assert _png_ok(path)
    assert [p.name for p in path.parent.iterdir()] == ["cm.png"]


def test_plot_confusion_matrix_all_zero_and_bad_shape(tmp_path):
    plot_confusion_matrix([[0, 0], [0, 0]], tmp_path / "zero.png")
    assert _png_ok(tmp_path / "zero.png")
    with pytest.raises(ValueError):
        plot_confusion_matrix([[1, 2, 3]], tmp_path / "bad.png")


def test_plot_roc(tmp_path):
    plot_roc(ASYM_LABELS, ASYM_SCORES, tmp_path / "roc.png")
    assert _png_ok(tmp_path / "roc.png")


def test_plot_roc_single_class(tmp_path):
    _no_warnings(plot_roc, [0, 0, 0], [0.1, 0.5, 0.9], tmp_path / "roc.png")
    assert _png_ok(tmp_path / "roc.png")


def test_plot_training_curves_with_phase_change_and_gaps(tmp_path):
    history = [
        {"epoch": 1, "phase": "frozen", "train_loss": 0.7, "train_accuracy": 0.55,
         "val_loss": 0.65, "val_accuracy": 0.6},
        {"epoch": 2, "phase": "frozen", "train_loss": "0.6", "train_accuracy": 0.65,
         "val_loss": None, "val_accuracy": ""},
        {"epoch": 1, "phase": "finetune", "train_loss": 0.4, "train_accuracy": 0.8,
         "val_loss": 0.45, "val_accuracy": 0.78},
        {"epoch": 2, "phase": "finetune", "train_loss": 0.3, "train_accuracy": 0.88},
    ]  # fmt: skip
    path = tmp_path / "curves.png"
    plot_training_curves(history, path)
    assert _png_ok(path)
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]


def test_plot_training_curves_empty_history(tmp_path):
    plot_training_curves([], tmp_path / "curves.png")
    assert _png_ok(tmp_path / "curves.png")


def test_overwrite_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "roc.png"
    plot_roc(ASYM_LABELS, ASYM_SCORES, path)
    plot_roc(SMALL_LABELS, SMALL_SCORES, path)  # replace an existing file
    assert _png_ok(path)
    assert [p.name for p in tmp_path.iterdir()] == ["roc.png"]


def test_failed_write_leaves_nothing_behind(tmp_path):
    # An unknown image format makes savefig fail after the temporary file was created.
    with pytest.raises(ValueError):
        plot_confusion_matrix([[1, 0], [0, 1]], tmp_path / "cm.not-a-format")
    assert list(tmp_path.iterdir()) == []


# --- calibration ------------------------------------------------------------------------------


def test_temperature_scaling_calibrates_an_over_confident_model():
    """A toy model whose logits are 4x the true log-odds: confident and badly calibrated."""
    from deepfake_detect.evaluation.metrics import (
        brier_score,
        expected_calibration_error,
        fit_temperature,
    )

    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 1.5, 20_000)
    labels = (rng.random(true_logits.size) < 1 / (1 + np.exp(-true_logits))).astype(int)
    logits = 4.0 * true_logits

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    before = expected_calibration_error(labels, sigmoid(logits))
    temperature = fit_temperature(labels, logits)
    after = expected_calibration_error(labels, sigmoid(logits / temperature))
    assert temperature == pytest.approx(4.0, rel=0.05)
    assert before > 0.1 and after < 0.02
    assert brier_score(labels, sigmoid(logits / temperature)) < brier_score(labels, sigmoid(logits))
    # a temperature changes no ranking
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(labels, logits)
    assert roc_auc_score(labels, logits / temperature) == pytest.approx(auc)


def test_calibration_error_and_brier_on_known_cases():
    from deepfake_detect.evaluation.metrics import (
        brier_score,
        expected_calibration_error,
        reliability_bins,
    )

    labels = np.array([0, 0, 1, 1])
    assert expected_calibration_error(labels, np.array([0.0, 0.0, 1.0, 1.0])) == 0.0
    assert expected_calibration_error(labels, np.array([0.5, 0.5, 0.5, 0.5])) == 0.0
    assert expected_calibration_error(labels, np.array([1.0, 1.0, 0.0, 0.0])) == 1.0
    assert brier_score(labels, np.array([0.5] * 4)) == 0.25
    bins = reliability_bins(labels, np.array([0.01, 0.02, 0.99, 1.0]))
    assert len(bins) == 15 and bins[0]["count"] == 2 and bins[-1]["count"] == 2
    metrics = compute_metrics(labels, np.array([0.1, 0.2, 0.8, 0.9]), 0.5, n_bootstrap=0)
    assert metrics["ece"] == pytest.approx(0.15) and metrics["calibration_bins"] == 15


def test_ece_by_chance_alone_is_what_calibrated_labels_give():
    from deepfake_detect.evaluation.metrics import ece_if_calibrated

    rng = np.random.default_rng(1)
    small, large = rng.random(250), rng.random(25_000)
    mean_small, high_small = ece_if_calibrated(small)
    mean_large, high_large = ece_if_calibrated(large)
    assert 0 < mean_small < high_small and 0 < mean_large < high_large
    assert mean_large < mean_small / 5  # the chance part shrinks as the set grows

    # Labels drawn as the scores say: the observed ECE is mostly within the chance band.
    within = [expected_calibration_error(rng.random(250) < small, small) <= high_small
              for _ in range(200)]  # fmt: skip
    assert 0.88 <= np.mean(within) <= 0.99
    # An over-confident model stands far outside it; certain scores leave no chance part.
    assert expected_calibration_error(np.ones(250, int), np.full(250, 0.6)) > 3 * high_small
    assert ece_if_calibrated(np.array([0.0, 1.0, 1.0])) == [0.0, 0.0]
    assert ece_if_calibrated(small, seed=3) == ece_if_calibrated(small, seed=3)
    with pytest.raises(ValueError, match="n_draws"):
        ece_if_calibrated(small, n_draws=0)


def test_metrics_carry_the_chance_ece_with_their_bootstrap():
    labels, scores = np.array([0, 0, 1, 1] * 10), np.array([0.1, 0.4, 0.6, 0.9] * 10)
    assert compute_metrics(labels, scores, 0.5, n_bootstrap=0)["ece_if_calibrated"] is None
    metrics = compute_metrics(labels, scores, 0.5, n_bootstrap=50)
    assert len(metrics["ece_if_calibrated"]) == 2
    json.dumps(metrics, allow_nan=False)
    assert "ECE by chance alone" in format_summary_table(metrics)


def test_fit_temperature_with_one_class_or_no_signal_is_one():
    from deepfake_detect.evaluation.metrics import fit_temperature

    assert fit_temperature([1, 1, 1], [2.0, 3.0, 1.0]) == 1.0
    assert fit_temperature([0, 1], [0.0, 0.0]) == 1.0
    with pytest.raises(ValueError):
        fit_temperature([0, 1], [0.0, float("nan")])


def test_reliability_diagram_is_written(tmp_path):
    from deepfake_detect.evaluation.plots import plot_reliability

    rng = np.random.default_rng(1)
    plot_reliability(rng.integers(0, 2, 200), rng.random(200), tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").read_bytes().startswith(b"\x89PNG")


def test_alarm_rates_count_each_class_with_wilson_intervals():
    from deepfake_detect.evaluation.metrics import alarm_rates, wilson_interval

    labels = np.array([0] * 100 + [1] * 10)
    scores = np.array([0.9] * 5 + [0.1] * 95 + [0.9] * 8 + [0.1] * 2)
    rates = alarm_rates(labels, scores, 0.5)
    assert rates["false_alarm_rate"] == 0.05 and rates["false_alarm_rate_count"] == [5, 100]
    assert rates["detection_rate"] == 0.8 and rates["detection_rate_count"] == [8, 10]
    low, high = rates["false_alarm_rate_interval"]
    assert low == pytest.approx(0.0215, abs=1e-3) and high == pytest.approx(0.1118, abs=1e-3)
    assert wilson_interval(0, 50)[0] == 0.0 and wilson_interval(0, 0) is None
    only_real = alarm_rates(np.zeros(4, int), np.array([0.1, 0.2, 0.7, 0.3]), 0.5)
    assert only_real["false_alarm_rate"] == 0.25 and only_real["detection_rate"] is None


def test_a_separable_validation_split_does_not_saturate_the_temperature():
    """Perfectly separated validation logits push the fitted T towards 0; it stops at 0.25."""
    from deepfake_detect.evaluation.metrics import fit_temperature

    labels = np.array([0] * 50 + [1] * 50)
    logits = np.concatenate([np.linspace(-6, -1, 50), np.linspace(1, 6, 50)])
    assert fit_temperature(labels, logits) == pytest.approx(0.25, rel=1e-3)
