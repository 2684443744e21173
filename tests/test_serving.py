"""The HTTP service: every route, every refusal, the model loaded once, micro-batching, the
queue's bound, the API key, logs without uploads, and the OpenAPI contract (schemathesis)."""

from __future__ import annotations

import base64
import io
import json
import logging
import struct
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
from conftest import make_model, photo_like, running_server
from fastapi.testclient import TestClient
from PIL import Image

from deepfake_detect.inference import load_detector
from deepfake_detect.serving import app as app_module
from deepfake_detect.serving.app import create_app
from deepfake_detect.serving.settings import ServiceSettings


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("serving") / "model", threshold=0.45, temperature=1.3)


def jpeg(seed: int = 0, size: int = 48, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    photo_like(np.random.default_rng(seed), size).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels: a decompression bomb's shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + \
        chunk(b"IEND", b"")  # fmt: skip


def files(*items: tuple[str, bytes]) -> list:
    return [("file", (name, data, "application/octet-stream")) for name, data in items]


def ready(client, seconds: float = 60.0) -> None:
    """Wait for the model to load (seconds on an idle machine; longer on a loaded one)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError(client.get("/readyz").json())


@pytest.fixture(scope="module")
def client(model):
    settings = ServiceSettings(model=str(model), max_upload_bytes=2**20, max_video_bytes=2**21,
                               max_video_seconds=6)  # fmt: skip
    with TestClient(create_app(settings)) as c:
        ready(c)
        yield c


def test_health_model_card_docs_and_page(client, model):
    assert client.get("/healthz").json() == {"status": "ok", "detail": None}
    assert client.get("/readyz").json()["status"] == "ready"
    card = client.get("/v1/model").json()
    detector = load_detector(model)
    assert card["weights_sha256"] == detector.config.weights_sha256
    assert (card["threshold"], card["temperature"], card["image_size"]) == (0.45, 1.3, 32)
    assert card["engine"] == "onnx" and card["backbone"] == "test_efficientnet"
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text  # no CDN, no fonts
    for name in ("app.js", "style.css"):
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200 and "https://" not in asset.text
    assert client.get("/static/../app.py").status_code == 404


def test_the_answer_is_the_detectors_score_with_the_image_and_model(client, model):
    data = [jpeg(seed) for seed in range(3)]
    named = [(f"p{i}.jpg", d) for i, d in enumerate(data)]
    answer = client.post("/v1/predict", files=files(*named))
    assert answer.status_code == 200
    results = answer.json()["results"]
    expected = load_detector(model).score(data)
    assert [r["filename"] for r in results] == ["p0.jpg", "p1.jpg", "p2.jpg"]  # input order
    for result, prediction in zip(results, expected, strict=True):
        assert result["score"] == pytest.approx(prediction.score, abs=1e-9)
        assert result["label"] == prediction.label and result["threshold"] == 0.45
        assert result["image"] == {"width": 48, "height": 48, "format": "JPEG",
                                   "bytes": len(data[results.index(result)])}  # fmt: skip
        assert result["model"]["weights_sha256"] == load_detector(model).config.weights_sha256
        assert result["error"] is None and result["heatmap_png"] is None
    assert answer.headers["x-request-id"] == answer.json()["request_id"]


def test_warnings_for_small_and_heavily_compressed_images(model):
    settings = ServiceSettings(model=str(model))
    with TestClient(create_app(settings)) as client:
        ready(client)
        small = client.post("/v1/predict", files=files(("s.jpg", jpeg(size=20))))
        squeezed = client.post("/v1/predict", files=files(("q.jpg", jpeg(quality=20))))
        fine = client.post("/v1/predict", files=files(("f.jpg", jpeg(quality=92))))
    assert "smaller than the model's 32x32 input" in small.json()["results"][0]["warnings"][0]
    assert "heavily compressed" in squeezed.json()["results"][0]["warnings"][0]
    assert fine.json()["results"][0]["warnings"] == []


TRUNCATED = jpeg()[:400]


@pytest.mark.parametrize(
    "kind, request_kwargs, status, words",
    [
        ("not an image", {"files": files(("a.jpg", b"just some text"))}, 415, "unsupported"),
        ("not multipart", {"content": jpeg(), "headers": {"content-type": "image/jpeg"}}, 415,
         "multipart/form-data"),
        ("truncated", {"files": files(("t.jpg", TRUNCATED))}, 422, "truncated"),
        ("bomb", {"files": files(("b.png", png_claiming(8_000, 8_000)))}, 413, "over the limit"),
        ("huge bomb", {"files": files(("b.png", png_claiming(90_000, 90_000)))}, 413, "limit of"),
        ("empty file", {"files": files(("e.jpg", b""))}, 422, "empty file"),
        ("no file part", {"data": {"other": "x"}, "files": [("other2", ("x", b"1"))]}, 400,
         "no image"),
        ("too many files", {"files": files(*[(f"{i}.jpg", b"x") for i in range(17)])}, 400,
         "more than 16 files"),
        ("over the size limit", {"files": files(("big.jpg", b"\xff" * (2**20 + 1)))}, 413,
         "over the limit of 1.0 MiB"),
        ("bad query", {"files": files(("a.jpg", jpeg())), "params": {"explain": "perhaps"}},
         400, "explain"),
        ("broken multipart", {"content": b"--xx\r\nnonsense", "headers": {
            "content-type": "multipart/form-data; boundary=xx"}}, 400, "malformed"),
    ],
)  # fmt: skip
def test_each_refusal_has_its_status_and_a_json_body(client, kind, request_kwargs, status, words):
    answer = client.post("/v1/predict", **request_kwargs)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"detail", "status", "request_id"} and body["status"] == status
    assert words in body["detail"] and "\n" not in body["detail"]


def test_a_bomb_is_refused_before_its_pixels_are_decoded(client, monkeypatch):
    decoded = []
    original = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self.size) or
                        original(self))  # fmt: skip
    for side in (8_000, 90_000):  # over our limit, and over Pillow's own
        answer = client.post("/v1/predict", files=files(("b.png", png_claiming(side, side))))
        assert answer.status_code == 413
    assert decoded == []


def test_a_mixed_request_answers_each_file_and_only_all_refused_fails(client):
    answer = client.post("/v1/predict", files=files(("bad.jpg", b"text"), ("good.jpg", jpeg())))
    assert answer.status_code == 200
    bad, good = answer.json()["results"]
    assert bad["error"]["status"] == 415 and bad["score"] is None
    assert good["error"] is None and 0 <= good["score"] <= 1


def test_after_every_kind_of_hostile_input_a_good_image_still_gets_its_answer(client):
    hostile = [
        {"files": files(("a.jpg", b"text"))},
        {"files": files(("t.jpg", TRUNCATED))},
        {"files": files(("b.png", png_claiming(100_000, 100_000)))},
        {"files": files(("big.jpg", b"\xff" * (2**20 + 10)))},
        {"content": (b"x" * 4096 for _ in range(800)),  # chunked: no Content-Length at all
         "headers": {"content-type": "multipart/form-data; boundary=x"}},
        {"content": b"--x\r\n" + b"a" * 100, "headers": {
            "content-type": "multipart/form-data; boundary=x", "content-length": "5"}},
        {"files": files(("../../etc/passwd<script>", b"GIF89a\x00"))},
    ]  # fmt: skip
    answers = [client.post("/v1/predict", **kwargs) for kwargs in hostile]
    statuses = [a.status_code for a in answers]
    assert all(400 <= s < 500 for s in statuses), statuses
    assert statuses[4] == 413  # the chunked body is counted as it arrives
    assert "request body goes past the limit of" in answers[4].text
    named = client.post("/v1/predict", files=files(("../../x<script>.jpg", jpeg()),
                                                   ("b.jpg", b"bad")))  # fmt: skip
    assert named.json()["results"][0]["filename"] == "x_script_.jpg"
    good = client.post("/v1/predict", files=files(("good.jpg", jpeg(5))))
    assert good.status_code == 200 and good.json()["results"][0]["score"] is not None


def test_uploads_never_touch_the_disk(model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an upload was about to be written to a temporary file")

    for name in ("SpooledTemporaryFile", "NamedTemporaryFile", "TemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    big = Image.fromarray(np.random.default_rng(1).integers(0, 255, (700, 700, 3), np.uint8))
    buffer = io.BytesIO()
    big.save(buffer, "PNG")  # about 1.5 MB: Starlette would spool this to disk
    with TestClient(create_app(ServiceSettings(model=str(model)))) as other:
        ready(other)
        answer = other.post("/v1/predict", files=files(("big.png", buffer.getvalue())))
    assert answer.status_code == 200 and answer.json()["results"][0]["score"] is not None


def test_logs_are_json_lines_with_id_size_and_time_but_no_upload(client, caplog):
    with caplog.at_level(logging.INFO, logger="deepfake_detect.serving"):
        answer = client.post("/v1/predict", files=files(("secret-name.jpg", jpeg())),
                             headers={"x-request-id": "req-42"})  # fmt: skip
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name.endswith("serving")]
    line = next(x for x in lines if x.get("path") == "/v1/predict")
    assert line["request_id"] == "req-42" == answer.headers["x-request-id"]
    assert line["status"] == 200 and line["bytes"] > 1000 and line["ms"] >= 0
    assert "secret-name" not in caplog.text


def test_the_api_key_is_required_when_set(model, monkeypatch):
    monkeypatch.setenv("DEEPFAKE_DETECT_API_KEY", "s3cret")
    with TestClient(create_app(ServiceSettings(model=str(model)))) as client:
        ready(client)
        assert client.get("/healthz").status_code == 200  # probes need no key
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            refused = client.post("/v1/predict", files=files(("a.jpg", jpeg())), headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            assert client.get("/v1/model", headers=headers).status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        assert client.post("/v1/predict", files=files(("a.jpg", jpeg())), headers=good).is_success
        assert client.get("/v1/model", headers=good).is_success


def test_not_ready_until_the_model_is_loaded_and_it_loads_once(model, monkeypatch):
    loads = []
    release = threading.Event()

    def slow_load(*args, **kwargs):
        loads.append(args)
        release.wait(10)
        return load_detector(*args, **kwargs)

    monkeypatch.setattr(app_module, "load_detector", slow_load)
    with TestClient(create_app(ServiceSettings(model=str(model)))) as client:
        assert client.get("/healthz").status_code == 200
        waiting = client.get("/readyz")
        assert waiting.status_code == 503 and waiting.json()["status"] == "loading"
        early = client.post("/v1/predict", files=files(("a.jpg", jpeg())))
        assert early.status_code == 503 and early.headers["retry-after"] == "1"
        release.set()
        ready(client)
        for seed in range(10):
            assert client.post("/v1/predict", files=files(("a.jpg", jpeg(seed)))).is_success
        client.get("/v1/model")
    assert len(loads) == 1


def test_the_service_engine_never_spins_while_uploads_are_decoded(model):
    with TestClient(create_app(ServiceSettings(model=str(model)))) as client:
        ready(client)
        assert client.app.state.service.detector.engine.spin is False


def test_a_model_that_fails_to_load_says_why(tmp_path):
    with TestClient(create_app(ServiceSettings(model=str(tmp_path / "missing")))) as client:
        for _ in range(100):
            body = client.get("/readyz").json()
            if body["status"] == "failed":
                break
            time.sleep(0.02)
        assert body["status"] == "failed" and "missing" in body["detail"]
        answer = client.post("/v1/predict", files=files(("a.jpg", jpeg())))
        assert answer.status_code == 503 and "failed to load" in answer.json()["detail"]


def post_many(url: str, images: list[bytes]) -> list[httpx.Response]:
    with ThreadPoolExecutor(len(images)) as pool:
        return list(pool.map(lambda d: httpx.post(url, files=files(("a.jpg", d)), timeout=30),
                             images))  # fmt: skip


def test_concurrent_requests_are_scored_in_shared_batches(model):
    images = [jpeg(seed) for seed in range(8)]
    expected = [p.score for p in load_detector(model).score(images)]
    for max_batch, wait_ms in ((8, 200.0), (1, 0.0)):
        app = create_app(ServiceSettings(model=str(model), max_batch=max_batch,
                                         batch_wait_ms=wait_ms))  # fmt: skip
        with running_server(app) as base:
            answers = post_many(f"{base}/v1/predict", images)
            batches = app.state.service.batcher.batches
        scores = [a.json()["results"][0]["score"] for a in answers]
        assert scores == pytest.approx(expected, abs=1e-6)
        if max_batch == 1:
            assert batches == 8
        else:
            assert batches < 8  # eight requests arriving within 200 ms shared calls


def test_past_the_queue_bound_requests_get_503_and_the_server_recovers(model):
    app = create_app(ServiceSettings(model=str(model), max_pending=2, max_batch=1))
    gate = threading.Event()
    with running_server(app) as base:
        detector = app.state.service.detector
        original = detector.score_arrays
        batcher = app.state.service.batcher
        batcher.score_batch = lambda batch: gate.wait(20) and original(batch)
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(httpx.post, f"{base}/v1/predict",
                                files=files(("a.jpg", jpeg())), timeout=30) for _ in range(2)]
            for _ in range(200):
                if app.state.service.pending == 2:
                    break
                time.sleep(0.01)
            refused = httpx.post(f"{base}/v1/predict", files=files(("a.jpg", jpeg())))
            gate.set()
            assert all(f.result().status_code == 200 for f in held)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert httpx.post(f"{base}/v1/predict", files=files(("a.jpg", jpeg()))).is_success


def test_explain_returns_a_heat_map_over_the_image(client):
    answer = client.post("/v1/predict", params={"explain": "true"},
                         files=files(("a.jpg", jpeg(size=64))))  # fmt: skip
    result = answer.json()["results"][0]
    heat = Image.open(io.BytesIO(base64.b64decode(result["heatmap_png"])))
    assert heat.format == "PNG" and heat.size == (64, 64)


def test_explain_on_an_onnx_file_still_scores_and_says_why_there_is_no_map(model, tmp_path):
    from deepfake_detect.inference.export import export_onnx

    onnx_file = export_onnx(model, tmp_path / "m.onnx").path
    with TestClient(create_app(ServiceSettings(model=str(onnx_file)))) as client:
        ready(client)
        answer = client.post("/v1/predict", params={"explain": "true"},
                             files=files(("a.jpg", jpeg())))  # fmt: skip
    result = answer.json()["results"][0]
    assert result["score"] is not None and result["heatmap_png"] is None
    assert "no heat-map" in result["warnings"][-1]


@pytest.fixture(scope="module")
def api_schema(model):
    app = create_app(ServiceSettings(model=str(model)))
    with running_server(app) as base:
        yield schemathesis.openapi.from_url(f"{base}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_the_service_keeps_its_openapi_contract(case):
    """Generated requests, valid and not, never get a 5xx or an answer outside the schema.

    A schema-valid upload is any byte string, which is rarely an image: for /v1/predict its
    415, 413 or 422 is the right answer, so "valid data is accepted" is not checked there."""
    from schemathesis.checks import positive_data_acceptance

    excluded = [positive_data_acceptance] if case.path == "/v1/predict" else []
    case.call_and_validate(excluded_checks=excluded)


def test_each_result_carries_the_files_provenance_apart_from_its_score(client, model):
    from provenance_files import c2pa_signed_jpeg, sd_png

    signed, sd, plain = c2pa_signed_jpeg(), sd_png(), jpeg(7)
    answer = client.post("/v1/predict", files=files(("s.jpg", signed), ("sd.png", sd),
                                                    ("p.jpg", plain)))  # fmt: skip
    assert answer.status_code == 200
    by_name = {r["filename"]: r for r in answer.json()["results"]}
    c2pa = by_name["s.jpg"]["provenance"]["c2pa"]
    assert c2pa["signature"] == "valid" and c2pa["digital_source_type"] == "trainedAlgorithmicMedia"
    assert by_name["sd.png"]["provenance"]["traces"][0]["field"] == "png:parameters"
    assert by_name["p.jpg"]["provenance"] == {"summary": "none", "ai_claimed": False, "c2pa": None,
                                              "traces": [], "error": None}  # fmt: skip
    expected = load_detector(model).score([signed, sd, plain])
    got = [by_name[n]["score"] for n in ("s.jpg", "sd.png", "p.jpg")]
    assert got == pytest.approx([p.score for p in expected], abs=1e-9)


def test_faces_and_videos_through_the_api(client, model, tmp_path):
    from test_faces import two_face_jpeg
    from test_video import write_clip

    clip = write_clip(tmp_path / "clip.mp4").read_bytes()
    long_clip = write_clip(tmp_path / "long.mp4", frames=16 * 8).read_bytes()  # 8 s > 6 s
    answer = client.post("/v1/predict", params={"frames": 4},
                         files=files(("c.mp4", clip), ("l.mp4", long_clip)))  # fmt: skip
    video, too_long = answer.json()["results"]
    assert [f["frame"] for f in video["frames"]] == [8, 24, 40, 56]
    frame_scores = [f["score"] for f in video["frames"]]
    assert video["score"] == pytest.approx(np.mean(frame_scores))
    assert video["max_score"] == max(frame_scores) and video["image"] is None
    assert too_long["error"]["status"] == 413 and "over the limit of 6 s" in too_long["error"][
        "detail"]  # fmt: skip
    big = client.post("/v1/predict", files=files(("v.mp4", clip[:16] + b"\0" * (2**20 + 8))))
    assert big.status_code == 422  # a video may pass the image limit; this one is broken
    group = two_face_jpeg("fake")
    answer = client.post("/v1/predict", params={"faces": "on"}, files=files(("g.jpg", group)))
    [result] = answer.json()["results"]
    assert [f["face"] for f in result["faces"]] == [0, 1]
    assert result["score"] == max(f["score"] for f in result["faces"])
    expected = load_detector(model).score(group, faces="on")[0]
    assert [f["box"] for f in result["faces"]] == [f["box"] for f in expected.faces]
    assert result["score"] == pytest.approx(expected.score, abs=1e-9)
    assert result["whole_score"] is None  # on: the faces alone
    answer = client.post("/v1/predict", params={"faces": "auto"}, files=files(("g.jpg", group)))
    [auto] = answer.json()["results"]
    expected = load_detector(model).score(group, faces="auto")[0]
    assert auto["whole_score"] == pytest.approx(expected.whole_score, abs=1e-9)
    assert auto["score"] == max(auto["whole_score"], *(f["score"] for f in auto["faces"]))
    assert client.post("/v1/predict", params={"faces": "maybe"},
                       files=files(("g.jpg", group))).status_code == 400  # fmt: skip
