"""scripts/threshold_rules.py: how far each threshold rule moves when the validation images
are resampled (docs/experiments.md, "A steadier threshold rule")."""

import csv

import numpy as np
import pytest
from conftest import load_script


@pytest.fixture(scope="module")
def rules():
    return load_script("threshold_rules")


def write_scores(path, labels, scores, sources):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "source", "label", "score"])
        for i, (label, score, source) in enumerate(zip(labels, scores, sources, strict=True)):
            writer.writerow([f"{source}/{i}.jpg", source, label, f"{score:.8f}"])


def test_equal_error_threshold_balances_the_two_errors(rules):
    labels = np.array([0] * 10 + [1] * 10)
    scores = np.r_[np.linspace(0.0, 0.6, 10), np.linspace(0.4, 1.0, 10)]
    t = rules.equal_error_threshold(labels, scores)
    false_alarm, missed = rules.rates(labels, scores, t)
    assert abs(false_alarm - missed) <= 0.1


def test_spread_is_zero_for_a_rule_that_ignores_the_sample(rules):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.clip(labels * 0.4 + rng.random(300) * 0.6, 0, 1)
    sources = np.where(np.arange(300) % 2, "a", "b")
    fixed = rules.spread(labels, sources, scores, lambda y, s: 0.5, n_resamples=50)
    assert fixed["spread"] == 0.0 and fixed["threshold_interval"] == [0.5, 0.5]
    moving = rules.spread(labels, sources, scores, rules.RULES["max-balanced"], n_resamples=50)
    assert moving["spread"] > 0.0


def test_the_table_has_a_row_per_file_and_rule(rules, tmp_path, capsys):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    logits = rng.normal(0, 1, 200) + np.where(labels == 1, 1.5, -1.5)
    path = tmp_path / "run-valid-q75.csv"
    write_scores(path, labels, 1 / (1 + np.exp(-logits)), ["x"] * 200)
    assert rules.main([str(path), "--resamples", "20"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "run-valid-q75" in line]
    assert [row.split(" | ")[1] for row in rows] == list(rules.RULES)


def test_a_file_without_both_classes_is_one_line_error(rules, tmp_path, capsys):
    path = tmp_path / "reals.csv"
    write_scores(path, [0, 0, 0], [0.1, 0.2, 0.3], ["x"] * 3)
    assert rules.main([str(path), "--resamples", "20"]) == 2
    out = capsys.readouterr()
    assert "needs real (0) and fake (1)" in out.err and out.out == ""  # no half-printed table
