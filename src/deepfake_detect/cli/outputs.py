"""Writing predictions as they are scored: a table, CSV, JSON Lines or JSON, to stdout or to a
file. A file is written through a temporary one that is renamed when the last row is in
(`files.atomic_open`), so an interrupted run leaves no partial output; memory stays flat."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from deepfake_detect.cli.common import STDOUT

CSV_FIELDS = ["path", "score", "label", "error", "provenance", "threshold"]


class PredictionWriter:
    """One record at a time. CSV: path,score,label,error,provenance,threshold (provenance as
    its one-line summary; empty when not read). JSON Lines: the header object (model, engine,
    threshold) first, then one line per prediction. JSON: one object, the header's fields and
    "predictions", closed by `close` (provenance as an object). table: aligned columns."""

    def __init__(self, out: IO[str], kind: str, header: dict, width: int = 40) -> None:
        self.out, self.kind, self.header, self.width = out, kind, header, width
        self.count = 0
        if kind == "csv":
            self.csv = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
            self.csv.writeheader()
        elif kind == "jsonl":
            out.write(json.dumps(header) + "\n")
        elif kind == "json":
            opening = json.dumps(header, indent=2)[:-2]  # without the closing "\n}"
            out.write(opening + ',\n  "predictions": [')
        else:
            out.write(
                f"{'path':<{width}}  {'score':>6}  {'label':<5}  {'threshold':>9}  "
                "error / provenance\n"
            )

    def write(self, record: dict) -> None:
        if self.kind == "csv":
            provenance = provenance_summary(record)
            self.csv.writerow(
                {**record, "provenance": provenance, "threshold": self.header["threshold"]}
            )
        elif self.kind == "jsonl":
            self.out.write(json.dumps(record) + "\n")
        elif self.kind == "json":
            self.out.write(("," if self.count else "") + "\n    " + json.dumps(record))
        else:
            self.out.write(table_row(record, self.header["threshold"], self.width) + "\n")
        self.count += 1

    def close(self) -> None:
        if self.kind == "json":
            self.out.write("\n  ]\n}\n")
        self.out.flush()


def table_row(record: dict, threshold: float, width: int) -> str:
    score = "" if record["score"] is None else f"{record['score']:.4f}"
    provenance = provenance_summary(record)
    note = record["error"] or ("" if provenance in ("", "none") else f"provenance: {provenance}")
    return (
        f"{record['path']:<{width}}  {score:>6}  {record['label'] or '':<5}  "
        f"{threshold:>9.4f}  {note}"
    )


def provenance_summary(record: dict) -> str:
    """The one-line summary of a record's provenance; empty when it was not read."""
    provenance = record.get("provenance")
    return provenance["summary"] if provenance else ""


@contextlib.contextmanager
def prediction_writer(
    output: Path | None, kind: str, header: dict, width: int = 40
) -> Iterator[PredictionWriter]:
    """A writer to stdout (no --output: the table; -: kind), or to a file, atomically: the
    file appears, whole, when the block ends without an error."""
    from deepfake_detect.files import atomic_open

    if output is None or str(output) == STDOUT:
        writer = PredictionWriter(sys.stdout, "table" if output is None else kind, header, width)
        yield writer
        writer.close()
        return
    with atomic_open(output) as raw:
        # surrogateescape: any file name, even one that is not UTF-8, is written as it is
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
        writer = PredictionWriter(text, kind, header, width)
        yield writer
        writer.close()
        text.detach()  # leave the binary file to atomic_open, which syncs and renames it
