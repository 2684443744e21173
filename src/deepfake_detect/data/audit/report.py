"""The audit's report (JSON and text) and the functions that run an audit."""

from __future__ import annotations

import dataclasses
import os
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from deepfake_detect.data.audit.duplicates import find_near_duplicates
from deepfake_detect.data.audit.facts import ImageFacts, image_facts
from deepfake_detect.data.audit.shortcuts import (
    Shortcut,
    attribute_value,
    find_shortcuts,
    kilobytes,
)
from deepfake_detect.data.datasets import LABEL_NAMES, SPLITS, ImageRecord, index_dataset
from deepfake_detect.errors import DataError

_TOP_VALUES = 5  # how many sizes the summary lists per source and class


# ---------------------------------------------------------------------------------------------
# The report


@dataclass
class AuditReport:
    """Everything the audit found; `to_dict` for JSON, `format_text` for the terminal."""

    facts: list[ImageFacts]
    groups: dict[str, str]
    duplicate_clusters: list[dict]
    shortcuts: list[Shortcut]
    threshold: float = 0.9
    max_distance: int = 6
    unreadable: list[dict] = field(init=False)

    def __post_init__(self) -> None:
        self.unreadable = [{"path": f.path, "error": f.error} for f in self.facts if f.error]

    def summary(self) -> dict[str, Any]:
        """Counts per class, source and split; attribute counts per source and class;
        duplicates by kind. JSON-ready."""
        return {
            "images": len(self.facts),
            "unreadable": len(self.unreadable),
            "counts": _count_rows(self.facts),
            "sources": _attribute_tables(self.facts),
            "duplicates": _duplicate_counts(self.duplicate_clusters),
        }

    def to_dict(self, include_images: bool = False) -> dict[str, Any]:
        """The summary, shortcuts, duplicate clusters and unreadable files (and every image's
        facts with include_images), as plain JSON types."""
        data = {
            "summary": self.summary(),
            "shortcuts": [dataclasses.asdict(s) for s in self.shortcuts],
            "duplicates": self.duplicate_clusters,
            "unreadable": self.unreadable,
        }
        if include_images:
            data["images"] = [f.to_dict() for f in self.facts]
        return data

    def format_text(self) -> str:
        """A multi-line report for the terminal; each shortcut on a loud "SHORTCUT:" line."""
        summary = self.summary()
        lines = _header_lines(summary)
        lines += _attribute_lines(summary["sources"])
        lines += _duplicate_lines(summary["duplicates"], self.duplicate_clusters)
        lines += [f"unreadable: {_with_path(u['path'], u['error'])}" for u in self.unreadable[:10]]
        lines += _shortcut_lines(self.shortcuts, self.threshold)
        return "\n".join(lines)


def _count_rows(facts: Sequence[ImageFacts]) -> list[dict[str, Any]]:
    """Rows {"source", "split", "class", "count"} sorted by source, split, class."""
    counts = Counter((f.source, f.split, f.label) for f in facts)

    def key(item: tuple[str, str | None, int]) -> tuple[str, int, int]:
        source, split, label = item
        return (source, SPLITS.index(split) if split in SPLITS else len(SPLITS), label)

    rows = []
    for source, split, label in sorted(counts, key=key):
        count = counts[source, split, label]
        rows.append({"source": source, "split": split, "class": LABEL_NAMES[label], "count": count})
    return rows


def _attribute_tables(facts: Sequence[ImageFacts]) -> dict[str, dict[str, dict]]:
    """{source: {class: {format, size, mode, jpeg_quality counts, mismatches, file_size}}}."""
    tables: dict[str, dict[str, dict]] = {}
    for source in sorted({f.source for f in facts}):
        tables[source] = {}
        for label in (0, 1):
            members = [f for f in facts if f.source == source and f.label == label]
            if members:
                tables[source][LABEL_NAMES[label]] = _class_table(members)
    return tables


def _class_table(facts: list[ImageFacts]) -> dict[str, Any]:
    """Attribute counts of the readable images of one source and class."""
    readable = [f for f in facts if f.error is None]
    table: dict[str, Any] = {"images": len(facts), "unreadable": len(facts) - len(readable)}
    for attribute in ("format", "size", "mode", "jpeg_quality"):
        counts = Counter(attribute_value(f, attribute) for f in readable)
        limit = _TOP_VALUES if attribute == "size" else None
        table[attribute] = dict(counts.most_common(limit))
    table["extension_mismatches"] = sum(f.extension_mismatch for f in readable)
    sizes = [f.file_size for f in readable]
    if sizes:
        table["file_size"] = {
            "min": min(sizes),
            "median": statistics.median(sizes),
            "max": max(sizes),
        }
    return table


def _duplicate_counts(clusters: Sequence[dict]) -> dict[str, int]:
    """How many clusters there are, how many images they hold, and how many cross what."""
    counts = {
        "clusters": len(clusters),
        "images": sum(len(c["paths"]) for c in clusters),
        "within": sum(
            not (c["cross_split"] or c["cross_class"] or c["cross_source"]) for c in clusters
        ),
    }
    for kind in ("cross_split", "cross_class", "cross_source"):
        counts[kind] = sum(c[kind] for c in clusters)
    return counts


def _header_lines(summary: dict[str, Any]) -> list[str]:
    lines = [f"Audit of {summary['images']} images, {summary['unreadable']} unreadable"]
    for row in summary["counts"]:
        split = row["split"] or "unsplit"
        lines.append(f"  {row['source']:<24} {split:<8} {row['class']:<5} {row['count']:>7}")
    return lines


def _attribute_lines(tables: dict[str, dict[str, dict]]) -> list[str]:
    lines = []
    for source, classes in tables.items():
        for name, table in classes.items():
            lines.append(f"{source} / {name}:")
            for attribute in ("format", "size", "mode", "jpeg_quality"):
                lines.append(f"    {attribute:<21} {_counts_text(table[attribute])}")
            lines.append(f"    {'extension mismatches':<21} {table['extension_mismatches']}")
            if "file_size" in table:
                sizes = "/".join(kilobytes(table["file_size"][k]) for k in ("min", "median"))
                sizes += f"/{kilobytes(table['file_size']['max'])}"
                lines.append(f"    {'file size min/med/max':<21} {sizes}")
    return lines


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{value} {count}" for value, count in counts.items()) or "-"


def _duplicate_lines(counts: dict[str, int], clusters: Sequence[dict]) -> list[str]:
    lines = [
        f"Near-duplicates: {counts['clusters']} clusters, {counts['images']} images; "
        f"cross-split {counts['cross_split']}, cross-class {counts['cross_class']}, "
        f"cross-source {counts['cross_source']}, within {counts['within']}"
    ]
    for cluster in clusters[:5]:
        lines.append(f"    {cluster['group']}: " + ", ".join(cluster["paths"][:3]))
    return lines


def _shortcut_lines(shortcuts: Sequence[Shortcut], threshold: float) -> list[str]:
    if not shortcuts:
        return [f"No shortcut found (balanced accuracy threshold {threshold:.2f})."]
    lines = []
    for s in shortcuts:
        lines.append(
            f"SHORTCUT: {s.attribute} predicts the class in {s.scope} "
            f"(balanced accuracy {s.balanced_accuracy:.2f}): {s.detail}"
        )
        if s.attribute == "file_size":
            lines.append("    file sizes also follow content; check format and quality first")
    return lines


# ---------------------------------------------------------------------------------------------
# Running the audit


def audit_records(
    records: Sequence[ImageRecord],
    *,
    max_distance: int = 6,
    threshold: float = 0.9,
    workers: int = 2,
    progress: bool = False,
) -> AuditReport:
    """Read every image's facts (in a thread pool), then find near-duplicates and shortcuts."""
    if not records:
        raise DataError("no images to audit")
    facts = compute_facts(records, workers=workers, progress=progress)
    return report_from_facts(facts, max_distance=max_distance, threshold=threshold)


def audit_dataset(
    roots: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any
) -> AuditReport:
    """Index the dataset folders (`index_dataset`) and audit them."""
    return audit_records(index_dataset(roots), **kwargs)


def compute_facts(
    records: Sequence[ImageRecord], *, workers: int = 2, progress: bool = False
) -> list[ImageFacts]:
    """`image_facts` of every record, in order; PIL releases the GIL while decoding."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(image_facts, records)
        return list(tqdm(results, total=len(records), desc="audit", disable=not progress))


def report_from_facts(
    facts: Sequence[ImageFacts], *, max_distance: int = 6, threshold: float = 0.9
) -> AuditReport:
    """Clusters and shortcuts from facts already computed (cheap: no file is read)."""
    facts = list(facts)
    clusters = find_near_duplicates(
        [_parse_hash(f.phash) for f in facts],
        max_distance,
        fine_hashes=[_parse_hash(f.fine_hash) for f in facts],
    )
    groups, described = _describe_clusters(facts, clusters)
    shortcuts = find_shortcuts(facts, threshold)
    return AuditReport(facts, groups, described, shortcuts, threshold, max_distance)


def _parse_hash(text: str | None) -> int | None:
    return None if text is None else int(text, 16)


def _describe_clusters(
    facts: list[ImageFacts], clusters: list[list[int]]
) -> tuple[dict[str, str], list[dict]]:
    """Group ids by path, and one JSON-ready dict per cluster, numbered by first path."""
    ordered = sorted(clusters, key=lambda c: min(facts[i].path for i in c))
    groups: dict[str, str] = {}
    described = []
    for number, cluster in enumerate(ordered):
        members = sorted((facts[i] for i in cluster), key=lambda f: f.path)
        group = f"dup-{number:06d}"
        groups.update((f.path, group) for f in members)
        described.append(_cluster_dict(group, members))
    return groups, described


def _cluster_dict(group: str, members: list[ImageFacts]) -> dict[str, Any]:
    splits = [f.split for f in members]
    return {
        "group": group,
        "paths": [f.path for f in members],
        "labels": [f.label for f in members],
        "sources": [f.source for f in members],
        "splits": splits,
        # An unsplit image will follow its group into whichever split it gets: no leak.
        "cross_split": len({s for s in splits if s is not None}) > 1,
        "cross_class": len({f.label for f in members}) > 1,
        "cross_source": len({f.source for f in members}) > 1,
    }


def apply_groups(records: Sequence[ImageRecord], report: AuditReport) -> list[ImageRecord]:
    """The records, with the cluster's group for each near-duplicate, so `make_split` keeps
    every cluster on one side.

    A cluster whose members already sit in different splits (a fixed split that leaks) cannot
    be moved; its members get one group per split, "dup-000012/train", so that `make_split`
    still accepts them, and the report's cross_split flag is what tells the user.
    """
    by_group: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        if str(record.path) in report.groups:
            by_group[report.groups[str(record.path)]].append(record)
    renamed: dict[str, str] = {}
    for group, members in by_group.items():
        fixed = {r.split for r in members if r.split is not None}
        for r in members:
            renamed[str(r.path)] = group if len(fixed) < 2 else f"{group}/{r.split or 'unsplit'}"
    return [
        dataclasses.replace(r, group=renamed[str(r.path)]) if str(r.path) in renamed else r
        for r in records
    ]


def _with_path(path: str, error: str) -> str:
    """The error, which names its file already (`load_image`'s messages start with it)."""
    return error if error.startswith(f"{path}: ") else f"{path}: {error}"
