"""The service's settings: one dataclass, filled from `serve`'s options or the environment.

Uvicorn starts each of several worker processes from an import string, so a process learns
its settings from the environment (`ServiceSettings.from_env`), which `serve` writes first.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

API_KEY_ENV = "DEEPFAKE_DETECT_API_KEY"
SETTINGS_ENV = "DEEPFAKE_DETECT_SERVE_SETTINGS"

MIB = 2**20


@dataclass(frozen=True)
class ServiceSettings:
    """What one server process loads and how much it accepts.

    `max_upload_bytes` bounds a whole request body, counted as it arrives (a missing or false
    Content-Length and a chunked body change nothing). `max_batch` images, or whatever came
    within `batch_wait_ms`, are scored at once; `max_batch=1` turns micro-batching off.
    `max_pending` requests may be in the server at once; the next gets 503 and Retry-After, so
    memory stays below about max_pending x max_upload_bytes. A video (mp4, mov, webm, mkv,
    avi) may be up to `max_video_bytes` (a request body too, then) and last up to
    `max_video_seconds`.
    """

    model: str | None = None  # None: the bundled model
    engine: str = "onnx"
    precision: str = "auto"
    device: str = "auto"  # for the torch engine and for explanations
    max_upload_bytes: int = 10 * MIB
    max_video_bytes: int = 50 * MIB
    max_video_seconds: int = 600
    max_files: int = 16
    max_pixels: int | None = None  # None: data.images' limit (40 megapixels)
    max_batch: int = 8
    batch_wait_ms: float = 5.0
    max_pending: int = 32
    api_key: str | None = None  # None: read DEEPFAKE_DETECT_API_KEY when the app is made
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        whole = ("max_upload_bytes", "max_video_bytes", "max_video_seconds", "max_files",
                 "max_batch", "max_pending", "retry_after_s")  # fmt: skip
        for name in whole:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
        if self.batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms must be 0 or more, got {self.batch_wait_ms}")

    def resolved_api_key(self) -> str | None:
        """The key requests must carry: the setting, else the environment's; '' means none."""
        key = self.api_key if self.api_key is not None else os.environ.get(API_KEY_ENV)
        return key or None

    def to_env(self) -> str:
        """These settings as one JSON string for `SETTINGS_ENV`; the key is never written:
        workers read it from their own environment."""
        values = dataclasses.asdict(self)
        values.pop("api_key")
        return json.dumps(values)

    @classmethod
    def from_env(cls) -> ServiceSettings:
        raw = os.environ.get(SETTINGS_ENV)
        return cls(**json.loads(raw)) if raw else cls()
