"""One self-contained `report.html` for an evaluation: every figure embedded as a data URL,
every table inline, no file or address outside it, so it opens offline and travels as one file.

It holds the exact command, the model's card, the overall metrics, one row per source ranked
worst first (by ROC-AUC, then accuracy), ROC curves and reliability diagrams of each source side
by side, and the confusion matrix: a cross-generator study (train on one generator, evaluate on
others with several --data) reads as one page.
"""

from __future__ import annotations

import base64
import html
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem;
       color: #1d2433; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { border: 1px solid #d5d9e0; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f2f4f7; }
code, pre { background: #f2f4f7; padding: 0.1rem 0.3rem; border-radius: 4px; }
pre { padding: 0.6rem; overflow-x: auto; white-space: pre-wrap; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; } figcaption { font-size: 0.85rem; color: #555; }
img { max-width: 100%; height: auto; }
.worst { background: #fff4e5; }
"""


def write_html_report(
    path: Path,
    metrics: dict,
    labels: np.ndarray,
    scores: np.ndarray,
    sources: Sequence[str],
    card: dict,
    figures: Sequence[Path],
    command: Sequence[str] | None = None,
) -> None:
    """Write the report; `figures` are PNG files already made, embedded in this order."""
    from deepfake_detect.evaluation.plots import plot_curves_by_source
    from deepfake_detect.files import atomic_write_bytes

    by_source = path.parent / "by_source.png"
    plot_curves_by_source(labels, scores, sources, by_source)
    command = list(command if command is not None else sys.argv)
    command[0] = Path(command[0]).name
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # nothing may load from outside the file: a policy that says so, to the browser too
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">",
        f"<title>Evaluation of {_e(card.get('name', 'model'))}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Evaluation of {_e(card.get('name', 'model'))}</h1>",
        f"<p>{metrics['n_images']} images, threshold {metrics['threshold']:.4f}"
        f"{_conditions(metrics)}.</p>",
        "<h2>Command</h2>",
        f"<pre>{_e(shlex.join(command))}</pre>",
        "<h2>Sources, worst first</h2>",
        _source_table(metrics),
        "<h2>All images</h2>",
        _overall_table(metrics),
        "<h2>Figures</h2>",
        '<div class="figures">',
        _figure(by_source, "ROC curve and reliability of each source"),
        *(_figure(f, f.stem.replace("_", " ")) for f in figures if f.is_file()),
        "</div>",
        "<h2>Model card</h2>",
        _card_table(card),
        "</body></html>",
    ]
    atomic_write_bytes(path, "\n".join(parts).encode("utf-8"))
    by_source.unlink(missing_ok=True)


def ranked_sources(metrics: dict) -> list[tuple[str, dict]]:
    """Sources worst first: lowest ROC-AUC (undefined last), then lowest accuracy."""

    def key(item):
        m = item[1]
        auc = m.get("roc_auc")
        return (auc is None, auc if auc is not None else 0.0, m.get("accuracy") or 0.0)

    return sorted(metrics.get("per_source", {}).items(), key=key)


def _source_table(metrics: dict) -> str:
    head = ("source", "images", "accuracy", "ROC-AUC", "ECE", "reals called fake", "fakes caught")
    rows = []
    for i, (name, m) in enumerate(ranked_sources(metrics)):
        cells = [
            _e(name), str(m["n_images"]), _with_interval(m, "accuracy"),
            _with_interval(m, "roc_auc"), _num(m.get("ece")), _num(m.get("false_alarm_rate")),
            _num(m.get("detection_rate")),
        ]  # fmt: skip
        css = ' class="worst"' if i == 0 and len(metrics["per_source"]) > 1 else ""
        rows.append(f"<tr{css}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return _table(head, rows)


def _overall_table(metrics: dict) -> str:
    names = [("accuracy", "accuracy"), ("roc_auc", "ROC-AUC"), ("average_precision", "AP"),
             ("eer", "equal error rate"), ("tpr_at_1pct_fpr", "fakes caught at 1% FPR"),
             ("balanced_accuracy", "balanced accuracy"), ("ece", "ECE"),
             ("brier", "Brier score"), ("false_alarm_rate", "reals called fake"),
             ("detection_rate", "fakes caught")]  # fmt: skip
    rows = []
    for key, label in names:
        if key in metrics:
            value = _with_interval(metrics, key) if key in ("accuracy", "roc_auc") else \
                _num(metrics.get(key))  # fmt: skip
            rows.append(f"<tr><td>{label}</td><td>{value}</td></tr>")
    return _table(("figure", "value"), rows)


def _card_table(card: dict) -> str:
    rows = []
    for key, value in card.items():
        if isinstance(value, dict | list):
            value = ", ".join(map(str, value)) if isinstance(value, list) else \
                f"{len(value)} entries"  # fmt: skip
        rows.append(f"<tr><td>{_e(key)}</td><td>{_e(str(value))}</td></tr>")
    return _table(("field", "value"), rows)


def _conditions(metrics: dict) -> str:
    said = []
    if metrics.get("jpeg_quality"):
        said.append(f"both classes re-encoded at JPEG quality {metrics['jpeg_quality']}")
    if metrics.get("change"):
        said.append(f"after the change {metrics['change']}")
    if metrics.get("figure_history"):
        said.append("with the diffusion faces' processing history")
    if metrics.get("faces") not in (None, "off"):
        said.append(f"faces {metrics['faces']}")
    return "; " + "; ".join(said) if said else ""


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")  # fmt: skip


def _table(head: Sequence[str], rows: Sequence[str]) -> str:
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _with_interval(m: dict, key: str) -> str:
    value = m.get(key)
    interval = (m.get("intervals") or {}).get(key)
    if value is None:
        return "n/a"
    return f"{value:.4f}" + (f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "")


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)
