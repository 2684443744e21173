"""The files a command scores: files as given, and the images of folders."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from deepfake_detect.data.datasets import IMAGE_SUFFIXES, scan_folder
from deepfake_detect.data.video import VIDEO_SUFFIXES, has_video_suffix, is_video
from deepfake_detect.errors import DetectorError


def expand_paths(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, and the image files of folders (recursively, sorted)."""
    return scan_inputs(paths)[0]


def scan_inputs(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """Files as given, and the image and video files of folders (recursively, sorted; see
    `datasets.scan_folder`; a video by its suffix, or its bytes when it has none); then the
    files of those folders skipped as neither."""
    out: list[Path] = []
    skipped: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found, others = scan_folder(path)
            videos = [f for f in others if has_video_suffix(f) or (not f.suffix and is_video(f))]
            # a link named like an image whose target is gone: an error row that says so,
            # rather than a file skipped as not an image
            dangling = [f for f in others if _dangling_image_link(f)]
            if not found and not videos and not dangling:
                suffixes = ", ".join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))
                raise DetectorError(f"{path}: folder holds no images or videos ({suffixes})")
            out.extend(sorted(found + videos + dangling))
            skipped.extend(f for f in others if f not in set(videos) | set(dangling))
        else:
            out.append(path)  # a missing or unreadable file becomes an error row, not a stop
    return out, skipped


def _dangling_image_link(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_symlink() and not path.exists()
