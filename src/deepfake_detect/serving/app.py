"""The HTTP service: FastAPI routes on the same `Detector` the command line uses.

The model loads once per process, in a thread after start-up (`/readyz` says when it is done).
Uploads are read into memory against a size limit, decoded in a thread pool, and their
preprocessed images go through one `MicroBatcher`, which scores concurrent requests' images
together. Nothing of an upload is written to disk or to the log: a log line carries the
request id, the body's size, the status and the time.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hmac
import json
import logging
import re
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deepfake_detect.data.video import DEFAULT_FRAMES, MAX_FRAMES, sniff_video
from deepfake_detect.errors import DetectorError, ImageError
from deepfake_detect.inference.detector import Detector, load_detector
from deepfake_detect.serving.batching import MicroBatcher
from deepfake_detect.serving.model_card import model_card
from deepfake_detect.serving.pipeline import Prepared, prepare, status_of
from deepfake_detect.serving.schemas import ErrorBody, ModelCard, PredictResponse, Status
from deepfake_detect.serving.settings import MIB, ServiceSettings
from deepfake_detect.serving.uploads import Upload, UploadError, parse_files, read_body
from deepfake_detect.version import __version__

log = logging.getLogger("deepfake_detect.serving")

STATIC = Path(str(resources.files("deepfake_detect.serving") / "static"))
_STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ERRORS = {
    status: {"model": ErrorBody}
    for status in (400, 401, 413, 415, 422, 503)
}  # fmt: skip


def _upload_body(max_files: int) -> dict:
    """The OpenAPI description of the multipart body, which the route reads itself."""
    files = {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "minItems": 1,
        "maxItems": max_files,
        "description": "one or more images (JPEG, PNG, WebP, BMP, TIFF, GIF, AVIF, HEIC)",
    }
    schema = {"type": "object", "required": ["file"], "properties": {"file": files}}
    return {"requestBody": {"required": True,
                            "content": {"multipart/form-data": {"schema": schema}}}}  # fmt: skip


class ServiceState:
    """What one process holds: the detector once loaded, the batcher, the pools, counters."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.api_key = settings.resolved_api_key()
        self.detector: Detector | None = None
        self.load_error: str | None = None
        self.batcher: MicroBatcher | None = None
        self.decoders = ThreadPoolExecutor(2, thread_name_prefix="decoding")
        self.explaining = ThreadPoolExecutor(1, thread_name_prefix="explaining")
        self.explainer = None
        self.explainer_lock = asyncio.Lock()
        self.pending = 0

    def load(self) -> Detector:
        s = self.settings
        # uploads are decoded while the engine scores: its threads must not spin
        return load_detector(
            s.model, s.device, engine=s.engine, precision=s.precision, spin=False
        )


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """The service for `settings` (the defaults: the bundled model, ONNX engine)."""
    settings = settings or ServiceSettings()
    state = ServiceState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.get_running_loop().create_task(_load(state))
        yield
        loading.cancel()
        if state.batcher is not None:
            await state.batcher.stop()
        state.decoders.shutdown(wait=False, cancel_futures=True)
        state.explaining.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="deepfake-detect",
        version=__version__,
        summary="P(fake) for face images, with Grad-CAM heat-maps",
        lifespan=lifespan,
    )
    app.state.service = state
    _add_handlers(app)

    @app.middleware("http")
    async def request_log(request: Request, call_next):
        given = request.headers.get("x-request-id", "")
        request.state.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        request.state.body_bytes = 0
        start = time.perf_counter()
        response = await call_next(request)
        response.headers["X-Request-ID"] = request.state.request_id
        log.info(json.dumps({
            "request_id": request.state.request_id, "method": request.method,
            "path": request.url.path, "status": response.status_code,
            "bytes": request.state.body_bytes,
            "ms": round((time.perf_counter() - start) * 1000, 1),
        }))  # fmt: skip
        return response

    @app.get("/healthz", response_model=Status, tags=["health"])
    async def healthz() -> Status:
        """The process is up (the model may still be loading)."""
        return Status(status="ok")

    @app.get("/readyz", response_model=Status, tags=["health"], responses={503: {"model": Status}})
    async def readyz():
        """Ready once the model is loaded; 503 while it loads or when loading failed."""
        if state.detector is not None:
            return Status(status="ready")
        status = "failed" if state.load_error else "loading"
        body = Status(status=status, detail=state.load_error).model_dump()
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})

    @app.get("/v1/model", response_model=ModelCard, tags=["model"], responses=_ERRORS)
    async def model(request: Request) -> ModelCard:
        """The model card: backbone, input, threshold, temperature, data, licence, metrics."""
        detector = _ready_detector(request, state)
        return ModelCard(**model_card(detector))

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        tags=["model"],
        responses=_ERRORS,
        openapi_extra=_upload_body(settings.max_files),
    )
    async def predict(
        request: Request,
        explain: bool = False,
        faces: Literal["off", "on", "auto"] = "off",
        frames: int = Query(DEFAULT_FRAMES, ge=1, le=MAX_FRAMES),
    ) -> PredictResponse:
        """Score one or more images or videos (multipart parts named `file`).

        With `explain=true` each answer carries a Grad-CAM heat-map over the image (PNG,
        base64); explanations run the PyTorch network, loaded on the first such request.
        `faces=on` scores each face found, cropped as the training images are framed (the
        image's score is the highest; `auto` crops only small faces). A video (mp4, mov, webm,
        mkv, avi) is scored at `frames` evenly spaced frames: its score is their mean, beside
        the highest (`max_score`); videos have their own size and duration limits.
        When every file is refused, the status is the first refusal's; otherwise 200, with
        each refused file's status and reason in its own `error`.
        """
        detector = _ready_detector(request, state)
        if state.pending >= settings.max_pending:
            raise UploadError(503, "the server is busy: retry shortly")
        state.pending += 1
        try:
            return await _predict(request, state, detector, explain, faces, frames)
        finally:
            state.pending -= 1

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name not in _STATIC_FILES:
            raise StarletteHTTPException(404, "no such file")
        return FileResponse(STATIC / name, media_type=_STATIC_FILES[name])

    return app


def app_from_env() -> FastAPI:
    """The app for uvicorn's worker processes (`serve --workers N`): settings from the
    environment that `serve` wrote."""
    json_logs()
    return create_app(ServiceSettings.from_env())


def json_logs() -> None:
    """The service's own lines are JSON already: one per line on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    # the multipart parser warns of a malformed body in a bare line of its own, while the
    # request is refused with a 400 and logged here as JSON
    for name in ("python_multipart.multipart", "multipart.multipart"):
        logging.getLogger(name).setLevel(logging.ERROR)


async def _load(state: ServiceState) -> None:
    try:
        detector = await asyncio.to_thread(state.load)
    except (DetectorError, ValueError, OSError) as exc:
        state.load_error = str(exc)
        log.error(json.dumps({"event": "model_load_failed", "detail": str(exc)}))
        return
    s = state.settings
    batcher = MicroBatcher(detector.score_arrays, s.max_batch, s.batch_wait_ms)
    batcher.start()
    state.batcher = batcher
    state.detector = detector
    log.info(json.dumps({"event": "model_loaded", **detector.info()}))


def _ready_detector(request: Request, state: ServiceState) -> Detector:
    _check_key(request, state)
    if state.detector is None:
        if state.load_error:
            raise UploadError(503, f"the model failed to load: {state.load_error}")
        raise UploadError(503, "the model is still loading: retry shortly")
    return state.detector


def _check_key(request: Request, state: ServiceState) -> None:
    if state.api_key is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    # compare_digest takes as long whatever the first differing byte: the key leaks no timing
    valid = hmac.compare_digest(token.strip().encode(), state.api_key.encode())
    if scheme.lower() != "bearer" or not valid:
        raise UploadError(401, "missing or wrong API key: send Authorization: Bearer <key>")


async def _predict(request, state: ServiceState, detector: Detector, explain, faces, frames):
    s = state.settings
    length = request.headers.get("content-length")
    body = await read_body(request.stream(), max(s.max_upload_bytes, s.max_video_bytes), length)
    request.state.body_bytes = len(body)
    uploads = parse_files(body, request.headers.get("content-type"), s.max_files)
    del body  # the parts hold their own bytes
    results = await asyncio.gather(
        *(_one(state, detector, u, explain, faces, frames) for u in uploads)
    )
    errors = [r["error"] for r in results if r["error"] is not None]
    if len(errors) == len(results):
        raise UploadError(errors[0]["status"], errors[0]["detail"])
    return PredictResponse(request_id=request.state.request_id, results=results)


async def _one(state: ServiceState, detector: Detector, upload: Upload, explain, faces,
               frames) -> dict:  # fmt: skip
    c, s = detector.config, state.settings
    result = {
        "filename": upload.filename, "score": None, "label": None, "threshold": c.threshold,
        "model": {"name": c.name, "version": c.version, "weights_sha256": c.weights_sha256},
        "image": None, "provenance": None, "warnings": [], "heatmap_png": None, "error": None,
    }  # fmt: skip
    loop = asyncio.get_running_loop()
    video = sniff_video(upload.data[:16]) is not None
    limit = s.max_video_bytes if video else s.max_upload_bytes
    if len(upload.data) > limit:
        what = "a video" if video else "an image"
        detail = f"{upload.filename}: {len(upload.data) / MIB:.1f} MiB, over the limit of " \
                 f"{limit / MIB:.1f} MiB for {what}"  # fmt: skip
        result["error"] = {"status": 413, "detail": detail}
        return result
    if video:
        return await _one_video(state, detector, upload, faces, frames, result)
    try:
        prepared: Prepared = await loop.run_in_executor(
            state.decoders, prepare, upload.data, upload.filename, c, state.settings.max_pixels
        )
    except ImageError as exc:
        result["error"] = {"status": status_of(exc), "detail": str(exc)}
        return result
    result["image"] = prepared.facts
    result["provenance"] = prepared.provenance
    result["warnings"] = prepared.warnings
    if faces == "off":
        score = await state.batcher.score(prepared.array)
        result["score"] = score
        result["label"] = "fake" if score >= c.threshold else "real"
    else:
        inputs = await loop.run_in_executor(
            state.decoders, detector.face_inputs, prepared.image, faces, prepared.provenance
        )
        scores = await asyncio.gather(*(state.batcher.score(a) for a in inputs.arrays))
        prediction = inputs.prediction(upload.filename, iter(scores), c.threshold)
        result["score"], result["label"] = prediction.score, prediction.label
        result["faces"] = prediction.faces
        result["whole_score"] = prediction.whole_score
        result["warnings"] += prediction.warnings or []
    if explain:
        heatmap, warning = await _explain(state, prepared)
        result["heatmap_png"] = heatmap
        if warning:
            result["warnings"].append(warning)
    return result


async def _one_video(state, detector: Detector, upload: Upload, faces, frames, result) -> dict:
    """A video upload: its frames decoded from memory in a worker thread, scored like images."""
    loop, s = asyncio.get_running_loop(), state.settings
    read = functools.partial(detector.video_inputs, upload.data, faces, frames,
                             name=upload.filename, max_seconds=s.max_video_seconds)  # fmt: skip
    try:
        inputs = await loop.run_in_executor(state.decoders, read)
    except ImageError as exc:
        result["error"] = {"status": status_of(exc), "detail": str(exc)}
        return result
    scores = await asyncio.gather(*(state.batcher.score(a) for a in inputs.arrays))
    prediction = inputs.prediction(upload.filename, iter(scores), detector.config.threshold)
    result["score"], result["label"] = prediction.score, prediction.label
    result["frames"], result["max_score"] = prediction.frames, prediction.max_score
    result["warnings"] = prediction.warnings or []
    return result


async def _explain(state: ServiceState, prepared: Prepared) -> tuple[str | None, str | None]:
    """The heat-map as base64 PNG, or None and why not (a warning: the score still stands)."""
    loop = asyncio.get_running_loop()
    async with state.explainer_lock:  # the PyTorch network is loaded once, on first use
        if state.explainer is None:
            try:
                state.explainer = await loop.run_in_executor(state.explaining, _load_explainer,
                                                             state.settings)  # fmt: skip
            except (DetectorError, ValueError, ImportError) as exc:
                return None, f"no heat-map: {_one_line(exc)}"
    explanation = await loop.run_in_executor(
        state.explaining, state.explainer.explain, prepared.image
    )
    return base64.b64encode(explanation.overlay_png()).decode("ascii"), None


def _load_explainer(settings: ServiceSettings):
    if settings.model is not None and str(settings.model).lower().endswith(".onnx"):
        raise ValueError("explanations need the model's folder (an .onnx file has no gradients)")
    try:
        from deepfake_detect.inference.explain import Explainer
    except ImportError as exc:
        raise ImportError(f"explanations need PyTorch: pip install 'deepfake-detect[torch]' "
                          f"({exc})") from None  # fmt: skip
    return Explainer.load(settings.model, settings.device)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _error(request: Request, status: int, detail: str, headers=None) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "") or uuid.uuid4().hex
    body = ErrorBody(detail=detail, status=status, request_id=request_id).model_dump()
    return JSONResponse(body, status_code=status, headers=headers)


def _add_handlers(app: FastAPI) -> None:
    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError):
        headers = None
        if exc.status == 503:
            headers = {"Retry-After": str(request.app.state.service.settings.retry_after_s)}
        elif exc.status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return _error(request, exc.status, exc.detail, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors()
        )
        return _error(request, 400, f"invalid request ({problems})")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _error(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))
