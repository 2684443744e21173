"""Shortcuts: attributes of the file that alone predict the class, so that a detector could
learn them instead of faces."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sklearn.metrics import roc_auc_score

from deepfake_detect.data.audit.facts import ImageFacts
from deepfake_detect.data.datasets import LABEL_NAMES

ATTRIBUTES = ("format", "size", "mode", "jpeg_quality", "extension_mismatch")
"""The categorical attributes that `find_shortcuts` tests, besides the continuous file size."""


# ---------------------------------------------------------------------------------------------
# Shortcuts


@dataclass
class Shortcut:
    """An attribute that alone predicts the class: a detector can learn it instead of faces."""

    attribute: str
    scope: str
    balanced_accuracy: float
    detail: str


def find_shortcuts(facts: Sequence[ImageFacts], threshold: float = 0.9) -> list[Shortcut]:
    """Attributes whose value alone predicts the class with balanced accuracy >= threshold.

    Scopes: all images together, then each source alone (skipped when it is all images, or
    lacks a class). Unreadable images are left out. A categorical attribute predicts, for each
    image, the class that is more frequent (relative to class size) among the *other* images
    with its value; a tie counts half right. Leaving the image out means a value seen once
    predicts nothing, so attributes unique per image (sizes of uncropped photos) do not look
    perfect. The file size is scored by max(AUC, 1 - AUC): it always differs a little between
    classes, so a flagged file size deserves a look rather than alarm.
    """
    readable = [f for f in facts if f.error is None]
    found: list[Shortcut] = []
    for scope, members in _scopes(readable):
        for attribute in (*ATTRIBUTES, "file_size"):
            score, detail = _score(members, attribute)
            if score >= threshold:
                found.append(Shortcut(attribute, scope, round(score, 4), detail))
    return found


def _scopes(facts: list[ImageFacts]) -> list[tuple[str, list[ImageFacts]]]:
    """("all", everything) and (source, its images), each only when it has both classes."""
    scopes = [("all", facts)]
    sources = sorted({f.source for f in facts})
    if len(sources) > 1:
        scopes += [(s, [f for f in facts if f.source == s]) for s in sources]
    return [(name, members) for name, members in scopes if len({f.label for f in members}) == 2]


def _score(facts: list[ImageFacts], attribute: str) -> tuple[float, str]:
    """The attribute's predictive measure and a one-line description per class."""
    if attribute == "file_size":
        return _file_size_score(facts)
    values = [attribute_value(f, attribute) for f in facts]
    if len(set(values)) < 2:
        return 0.5, ""  # a single value separates nothing
    labels = [f.label for f in facts]
    return _leave_one_out_accuracy(values, labels), _value_detail(values, labels)


def attribute_value(facts: ImageFacts, attribute: str) -> str:
    """The attribute as text, the form used for counting ("PNG", "128x128", "q75", "none")."""
    if attribute == "size":
        value: Any = facts.size
    elif attribute == "jpeg_quality":
        value = None if facts.jpeg_quality is None else f"q{facts.jpeg_quality}"
    elif attribute == "extension_mismatch":
        value = "extension lies" if facts.extension_mismatch else "extension ok"
    else:
        value = getattr(facts, attribute)
    return "none" if value is None else str(value)


def _leave_one_out_accuracy(values: list[str], labels: list[int]) -> float:
    """Balanced accuracy of predicting each image's class from the others with its value."""
    totals = Counter(labels)
    counts = Counter(zip(values, labels, strict=True))
    right = {0: 0.0, 1: 0.0}
    for value in set(values):
        n = {label: counts[value, label] for label in (0, 1)}
        for label in (0, 1):
            other = 1 - label
            # Compare class rates n/total, cross-multiplied to stay in integers.
            own = (n[label] - 1) * totals[other]
            rival = n[other] * totals[label]
            right[label] += n[label] * (1.0 if own > rival else 0.5 if own == rival else 0.0)
    return (right[0] / totals[0] + right[1] / totals[1]) / 2


def _value_detail(values: list[str], labels: list[int]) -> str:
    """Text like "real: PNG 100%; fake: JPEG 99%, PNG 1%": the top three values per class."""
    parts = []
    for label in (0, 1):
        counts = Counter(v for v, lab in zip(values, labels, strict=True) if lab == label)
        total = sum(counts.values())
        top = ", ".join(f"{v} {100 * n / total:.0f}%" for v, n in counts.most_common(3))
        parts.append(f"{LABEL_NAMES[label]}: {top}")
    return "; ".join(parts)


def _file_size_score(facts: list[ImageFacts]) -> tuple[float, str]:
    """max(AUC, 1 - AUC) of the file size as a score for "fake", and the medians."""
    labels = [f.label for f in facts]
    sizes = [f.file_size for f in facts]
    auc = float(roc_auc_score(labels, sizes))
    medians = [
        f"{LABEL_NAMES[label]}: median {kilobytes(_median_size(facts, label))}" for label in (0, 1)
    ]
    return max(auc, 1 - auc), f"{'; '.join(medians)} (AUC {auc:.2f})"


def _median_size(facts: Iterable[ImageFacts], label: int) -> float:
    return statistics.median(f.file_size for f in facts if f.label == label)


def kilobytes(size: float) -> str:
    return f"{size / 1000:.1f} kB"
