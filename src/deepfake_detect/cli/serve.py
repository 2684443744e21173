"""`serve`: the HTTP service and its web page, on uvicorn."""

from __future__ import annotations

import math
import os
from typing import Annotated

import typer

from deepfake_detect.cli.common import (
    MALLOC_ENVIRONMENT,
    DeviceOption,
    EngineOption,
    MaxPixelsOption,
    ModelOption,
    PrecisionOption,
    tune_malloc,
)

SERVE_HINT = "the service needs the serve extra: pip install 'deepfake-detect[serve]'"


def serve(
    model: ModelOption = None,
    engine: EngineOption = "onnx",
    precision: PrecisionOption = "auto",
    device: DeviceOption = "auto",
    host: Annotated[str, typer.Option(metavar="ADDR", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="N", help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(metavar="N", help="Server processes (each loads the model once).")
    ] = 1,
    max_upload_mb: Annotated[
        float, typer.Option(metavar="MB", help="Largest request body, in MiB.")
    ] = 10.0,
    max_video_mb: Annotated[
        float, typer.Option(metavar="MB", help="Largest video upload (and body), in MiB.")
    ] = 50.0,
    max_video_seconds: Annotated[
        int, typer.Option(metavar="S", help="Longest video accepted, in seconds.")
    ] = 600,
    max_batch: Annotated[
        int,
        typer.Option(metavar="N", help="Images scored together across requests (1: no batching)."),
    ] = 8,
    batch_wait_ms: Annotated[
        float, typer.Option(metavar="MS", help="How long the first image waits for others.")
    ] = 5.0,
    max_pending: Annotated[
        int, typer.Option(metavar="N", help="Requests in the server at once; more get 503.")
    ] = 32,
    max_pixels: MaxPixelsOption = None,
) -> None:
    """Serve the detector over HTTP: POST /v1/predict, GET /v1/model, a web page at /, OpenAPI
    docs at /docs. Set DEEPFAKE_DETECT_API_KEY to require 'Authorization: Bearer <key>'."""
    try:
        import uvicorn

        from deepfake_detect.serving.settings import SETTINGS_ENV, ServiceSettings
    except ImportError:
        raise ValueError(SERVE_HINT) from None
    if not 0 < port < 65536:
        raise ValueError(f"--port must be within 1-65535, got {port}")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    for flag, value in (("--max-upload-mb", max_upload_mb), ("--max-video-mb", max_video_mb),
                        ("--max-video-seconds", max_video_seconds)):  # fmt: skip
        if not 0 < value < math.inf:  # also refuses nan
            raise ValueError(f"{flag} must be a positive number, got {value}")
    settings = ServiceSettings(
        model=str(model) if model is not None else None, engine=engine, precision=precision,
        device=device, max_upload_bytes=int(max_upload_mb * 2**20), max_batch=max_batch,
        batch_wait_ms=batch_wait_ms, max_pending=max_pending, max_pixels=max_pixels,
        max_video_bytes=int(max_video_mb * 2**20), max_video_seconds=max_video_seconds,
    )  # fmt: skip
    if tune_malloc():  # this process; glibc reads the same from the environment in workers
        os.environ.update(MALLOC_ENVIRONMENT)
    _check_host(host, port)
    _check_model(settings)
    os.environ[SETTINGS_ENV] = settings.to_env()  # read by each worker process
    uvicorn.run(
        "deepfake_detect.serving.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,  # the service logs each request itself, as JSON, without its query
    )


def _check_model(settings) -> None:
    """Fail before listening when the model or an option is wrong, not in every worker."""
    from deepfake_detect.devices import check_device_name
    from deepfake_detect.inference.detector import check_engine_choice, resolve_model
    from deepfake_detect.inference.engines import check_engine_name
    from deepfake_detect.inference.onnx_files import check_precision_name

    check_device_name(settings.device)
    check_engine_name(settings.engine)
    check_precision_name(settings.precision)
    # else every worker would fail to load the model, and the service stay up answering 503
    check_engine_choice(settings.model, settings.engine, settings.precision)
    if settings.model is None or not settings.model.lower().endswith(".onnx"):
        resolve_model(settings.model)
    elif not os.path.isfile(settings.model):
        raise ValueError(f"{settings.model}: model not found")


def _check_host(host: str, port: int) -> None:
    """A host name that does not resolve, refused before uvicorn reports it its own way."""
    import socket

    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise ValueError(f"--host {host}: {reason}") from None

