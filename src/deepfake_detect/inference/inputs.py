"""The files a command scores: files as given, and the images of folders."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from deepfake_detect.data.datasets import IMAGE_SUFFIXES, scan_folder
from deepfake_detect.errors import DetectorError


def expand_paths(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, and the image files of folders (recursively, sorted)."""
    return scan_inputs(paths)[0]


def scan_inputs(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """Files as given, and the image files of folders (recursively, sorted; see
    `datasets.scan_folder`); then the files of those folders skipped as not images."""
    out: list[Path] = []
    skipped: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found, others = scan_folder(path)
            if not found:
                raise DetectorError(
                    f"{path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            out.extend(found)
            skipped.extend(others)
        else:
            out.append(path)  # a missing or unreadable file becomes an error row, not a stop
    return out, skipped
