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
# --faces, or videos among the inputs: one row per face (its index and box: x1 y1 x2 y2,
# pixels) and per video frame (its number), after the first four; a video's own row has its
# mean score, and the highest frame score as max_score
MEDIA_CSV_FIELDS = ["path", "score", "label", "error", "frame", "face", "box", "max_score",
                    "provenance", "warnings", "threshold"]  # fmt: skip


class PredictionWriter:
    """One record at a time. CSV: path,score,label,error,provenance,threshold (provenance as
    its one-line summary; empty when not read). JSON Lines: the header object (model, engine,
    threshold) first, then one line per prediction. JSON: one object, the header's fields and
    "predictions", closed by `close` (provenance as an object). table: aligned columns."""

    def __init__(
        self, out: IO[str], kind: str, header: dict, width: int = 40, faces: bool = False
    ) -> None:
        self.out, self.kind, self.header, self.width = out, kind, header, width
        self.faces = faces
        self.count = 0
        if kind == "csv":
            fields = MEDIA_CSV_FIELDS if faces else CSV_FIELDS
            self.csv = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
            self.csv.writeheader()
        elif kind == "jsonl":
            out.write(json.dumps(header) + "\n")
        elif kind == "json":
            opening = json.dumps(header, indent=2)[:-2]  # without the closing "\n}"
            out.write(opening + ',\n  "predictions": [')
        else:
            out.write(
                f"{'path':<{width}}  {'score':>6}  {'label':<5}  {'threshold':>9}  "
                "notes\n"
            )

    def write(self, record: dict) -> None:
        if self.kind in ("csv", "table"):
            rows = media_rows(record, self.header["threshold"]) if self.faces else [record]
            for row in rows:
                self._write_row(row)
        elif self.kind == "jsonl":
            self.out.write(json.dumps(record) + "\n")
        else:
            self.out.write(("," if self.count else "") + "\n    " + json.dumps(record))
        self.count += 1

    def _write_row(self, row: dict) -> None:
        threshold = self.header["threshold"]
        if self.kind == "table":
            self.out.write(table_row(row, threshold, self.width) + "\n")
            return
        extra = {"provenance": provenance_summary(row), "threshold": threshold}
        if self.faces:
            extra["warnings"] = "; ".join(row.get("warnings") or [])
        self.csv.writerow({k: v for k, v in row.items() if k in self.csv.fieldnames} | extra)

    def close(self) -> None:
        if self.kind == "json":
            self.out.write("\n  ]\n}\n")
        self.out.flush()


def table_row(record: dict, threshold: float, width: int) -> str:
    score = "" if record["score"] is None else f"{record['score']:.4f}"
    provenance = provenance_summary(record)
    notes = [] if record.get("frame") in ("", None) else [f"frame {record['frame']}"]
    notes += [f"face {record['face']} at {record['box']}"] if record.get("box") else []
    notes += ["the whole image, scored beside its faces"] if record.get("whole") else []
    if record.get("max_score") is not None:
        notes.append(f"video: mean of its frames, highest {record['max_score']:.4f}")
    notes += [record["error"]] if record["error"] else []
    notes += record.get("warnings") or []
    notes += [] if provenance in ("", "none") else [f"provenance: {provenance}"]
    return (
        f"{record['path']:<{width}}  {score:>6}  {record['label'] or '':<5}  "
        f"{threshold:>9.4f}  {'; '.join(notes)}"
    )


def media_rows(record: dict, threshold: float) -> list[dict]:
    """A record as rows: a video's frames (each by face_rows), then the video's own row; an
    image by face_rows."""
    if not record.get("frames"):
        return face_rows(record, threshold)
    rows = []
    for frame in record["frames"]:
        shared = {"path": record["path"], "error": None, "warnings": None, "frame": frame["frame"]}
        rows += face_rows({**frame, **shared, "provenance": None}, threshold)
    return [*rows, {**record, "frame": "", "face": "", "box": ""}]


def face_rows(record: dict, threshold: float) -> list[dict]:
    """A record of --faces as rows: one per face (its own score, label, index and box), after
    one for the whole image when auto scored it beside them (face "whole", no box); or one for
    the whole image when no face was cropped (no face, no box)."""
    base = {"frame": "", **record, "face": "", "box": ""}
    faces = record.get("faces") or []
    if not faces:
        return [base]
    whole = record.get("whole_score")
    rows = [] if whole is None else [
        {**base, "score": whole, "label": "fake" if whole >= threshold else "real",
         "face": "whole", "whole": True}
    ]  # fmt: skip
    return rows + [
        {**base, "score": f["score"], "label": f["label"], "face": f["face"],
         "box": " ".join(map(str, f["box"])), "path": record["path"]}
        for f in faces
    ]  # fmt: skip


def provenance_summary(record: dict) -> str:
    """The one-line summary of a record's provenance; empty when it was not read."""
    provenance = record.get("provenance")
    return provenance["summary"] if provenance else ""


@contextlib.contextmanager
def prediction_writer(
    output: Path | None, kind: str, header: dict, width: int = 40, faces: bool = False
) -> Iterator[PredictionWriter]:
    """A writer to stdout (no --output: the table; -: kind), or to a file, atomically: the
    file appears, whole, when the block ends without an error."""
    from deepfake_detect.files import atomic_open

    if output is None or str(output) == STDOUT:
        table = "table" if output is None else kind
        writer = PredictionWriter(sys.stdout, table, header, width, faces)
        yield writer
        writer.close()
        return
    with atomic_open(output) as raw:
        # surrogateescape: any file name, even one that is not UTF-8, is written as it is
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
        writer = PredictionWriter(text, kind, header, width, faces)
        yield writer
        writer.close()
        text.detach()  # leave the binary file to atomic_open, which syncs and renames it
