"""Video files: recognised by their bytes, decoded with PyAV, sampled at evenly spaced frames.

A broken or truncated video is a `VideoError` with a one-line message, like a broken image;
limits bound the file size, the duration and the frames sampled, and each frame's pixels are
checked like an image's before it is used.
"""

from __future__ import annotations

import io
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from deepfake_detect.errors import ImageError, ImageTooLargeError, UnsupportedImageError

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".webm", ".mkv"})
MAX_VIDEO_BYTES = 2 * 2**30  # 2 GiB
MAX_VIDEO_SECONDS = 3 * 3600
MAX_FRAMES = 1000
DEFAULT_FRAMES = 16
FRAME_SLACK = 1e-3  # of a frame's time: rounding in timestamps, not a missing frame


class VideoError(ImageError):
    """A video that cannot be read: the same kind of error row as a broken image."""


@dataclass(frozen=True)
class Frame:
    index: int  # the frame's number in the stream, from 0
    time: float  # seconds from the start
    image: Image.Image


def sniff_video(head: bytes) -> str | None:
    """The container named by a file's first bytes: mp4 (also mov, m4v), webm/mkv, avi."""
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
        return "mp4"
    if head[:4] == b"\x1aE\xdf\xa3":
        return "webm"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return None


def is_video(path: str | os.PathLike) -> bool:
    """A regular file whose bytes start like a video container (never judged by the name).

    A pipe, such as /dev/stdin, is never taken for one: its first bytes cannot be read without
    being taken from the image that is read from it next (which then looked like no image at
    all, or, from a named pipe whose writer had gone, was waited for forever)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # asked without opening it
            return False
        with open(path, "rb") as file:
            return sniff_video(file.read(16)) is not None
    except OSError:
        return False


def has_video_suffix(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def read_frames(
    source: str | os.PathLike | bytes,
    count: int = DEFAULT_FRAMES,
    *,
    max_pixels: int | None = None,
    max_seconds: float = MAX_VIDEO_SECONDS,
    name: str | None = None,
) -> tuple[list[Frame], float]:
    """`count` frames at evenly spaced times (the middle of `count` equal parts of the
    video), as RGB images, and the duration in seconds. `source` is a path or the file's bytes
    (named `name` in errors). Raises `VideoError` (or `ImageTooLargeError` past a limit)."""
    from deepfake_detect.data.images import max_pixels_limit

    check_frame_count(count)
    limit = max_pixels_limit() if max_pixels is None else max_pixels
    if isinstance(source, bytes | bytearray):
        name = name or "<bytes>"
        head, size, opened = bytes(source[:16]), len(source), io.BytesIO(source)
    else:
        name = name or str(source)
        head, size = _head_and_size(source, name)
        opened = str(source)
    if sniff_video(head) is None:
        raise UnsupportedImageError(f"{name}: not a video file (mp4, mov, webm, mkv, avi)")
    if size > MAX_VIDEO_BYTES:
        raise ImageTooLargeError(
            f"{name}: video is {size / 2**30:.1f} GiB, over the limit of "
            f"{MAX_VIDEO_BYTES / 2**30:.0f} GiB"
        )
    try:
        import av
    except ImportError:
        raise UnsupportedImageError(
            f"{name}: videos need PyAV: pip install av"
        ) from None
    try:
        with av.open(opened, mode="r", metadata_errors="ignore") as container:
            return _sample(container, name, count, limit, max_seconds)
    except av.FFmpegError as exc:
        raise VideoError(f"{name}: corrupt or truncated video ({_reason(exc)})") from None


def _head_and_size(path: str | os.PathLike, name: str) -> tuple[bytes, int]:
    try:
        with open(path, "rb") as file:
            return file.read(16), os.fstat(file.fileno()).st_size
    except FileNotFoundError:
        raise VideoError(f"{name}: no such file") from None
    except OSError as exc:
        raise VideoError(f"{name}: cannot read file ({exc.strerror})") from None


def check_frame_count(count: int) -> int:
    if not 1 <= count <= MAX_FRAMES:
        raise ValueError(f"--frames must be within [1, {MAX_FRAMES}], got {count}")
    return count


def _sample(container, name, count, max_pixels, max_seconds) -> tuple[list[Frame], float]:
    if not container.streams.video:
        raise VideoError(f"{name}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    if stream.width * stream.height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: frames are {stream.width}x{stream.height} = "
            f"{stream.width * stream.height:,} pixels, over the limit of {max_pixels:,}"
        )
    duration = _duration(container, stream)
    if duration is None or duration <= 0:
        raise VideoError(f"{name}: the video says nothing of its duration")
    if duration > max_seconds:
        raise ImageTooLargeError(
            f"{name}: video lasts {duration:.0f} s, over the limit of {max_seconds:.0f} s"
        )
    start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
    targets = [start + (k + 0.5) * duration / count for k in range(count)]
    frames = _frames_at(container, stream, targets)
    if len(frames) < count:
        reached = frames[-1].time if frames else 0.0
        raise VideoError(
            f"{name}: truncated video: it claims {duration:.1f} s, but no frame could be "
            f"read after {reached:.1f} s"
        )
    return frames, duration


def _frames_at(container, stream, targets: list[float]) -> list[Frame]:
    """The first frame at or after each target time, decoding forward from one pass of the
    stream (seeking per target when targets lie far apart).

    One decoding generator serves every target up to the next seek: a new one per target
    would drop the frames a packet had already given, and after the last packet it would ask
    a decoder that has been flushed for more, which FFmpeg answers with an end-of-file error
    (a short video with targets close together read as corrupt)."""
    fps = float(stream.average_rate or stream.guessed_rate or 25)
    base = stream.time_base
    frames: list[Frame] = []
    pending = iter(targets)
    target = next(pending, None)
    previous = -math.inf
    decoded = None
    last = None  # the last frame decoded, and its time
    while target is not None:
        if target - previous > 4.0:  # far ahead: jump to the keyframe before it
            container.seek(int(target / base), stream=stream, backward=True, any_frame=False)
            decoded, last = None, None
        if decoded is None:
            decoded = container.decode(stream)
        found = None
        for frame in decoded:
            if frame.pts is None:
                continue
            last = frame, float(frame.pts * base)
            # a frame shows from half a frame before its time to half a frame after it
            if last[1] + (0.5 + FRAME_SLACK) / fps >= target:
                found = _frame(*last, fps)
                break
        if found is None and last is not None and target <= last[1] + (1 + FRAME_SLACK) / fps:
            found = _frame(*last, fps)  # the stream ended within the last frame's time
        if found is None:
            break  # the stream ended: truncated
        frames.append(found)
        previous = found.time
        target = next(pending, None)
        while target is not None and target <= previous:  # two targets in one frame's span
            frames.append(found)
            target = next(pending, None)
    return frames


def _frame(frame, time: float, fps: float) -> Frame:
    return Frame(round(time * fps), time, frame.to_image().convert("RGB"))


def _duration(container, stream) -> float | None:
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__
