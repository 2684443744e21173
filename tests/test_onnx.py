"""The ONNX engine: export and its check, the cache beside the weights, scoring without torch,
streamed output and the benchmark."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_model, photo_like, write_class_folders

from deepfake_detect.cli import main
from deepfake_detect.cli.outputs import PredictionWriter
from deepfake_detect.errors import ModelError
from deepfake_detect.inference import load_detector
from deepfake_detect.inference.export import ExportCheckError, export_onnx
from deepfake_detect.inference.onnx_files import DEFAULT_KEY, ONNX_NAMES, WEIGHTS_KEY

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("tiny") / "model", threshold=0.4, temperature=1.7)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)
    paths = []
    for i in range(12):
        path = folder / f"photo{i:02d}.jpg"
        photo_like(rng, 48).save(path, "JPEG", quality=85)
        paths.append(path)
    return paths


def scores(detector, paths) -> np.ndarray:
    return np.array([p.score for p in detector.score(paths)])


def test_onnx_and_torch_engines_agree_on_images(tiny, photos):
    onnx_scores = scores(load_detector(tiny), photos)
    torch_scores = scores(load_detector(tiny, device="cpu", engine="torch"), photos)
    assert np.max(np.abs(onnx_scores - torch_scores)) <= 1e-4
    assert (tiny / ONNX_NAMES["fp32"]).is_file()  # exported once, beside the weights


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside the clone")
def test_bundled_engines_agree_on_real_photos():
    real = sorted((SHARED / "faces140k-sample" / "real").glob("*.jpg"))[:8]
    fake = sorted((SHARED / "faces140k-sample" / "fake").glob("*.jpg"))[:8]
    onnx_scores = scores(load_detector(precision="fp32"), real + fake)
    torch_scores = scores(load_detector(device="cpu", engine="torch"), real + fake)
    assert np.max(np.abs(onnx_scores - torch_scores)) <= 1e-4


def test_the_bundled_int8_file_was_exported_from_the_bundled_weights():
    from deepfake_detect.inference import BUNDLED_DIR
    from deepfake_detect.inference.onnx_cache import fresh_engine
    from deepfake_detect.inference.onnx_files import weights_hash

    engine = fresh_engine(BUNDLED_DIR, "int8", weights_hash(BUNDLED_DIR))
    assert engine is not None and engine.precision == "int8"
    import json

    import onnx

    metadata = {p.key: p.value for p in onnx.load(str(engine.path)).metadata_props}
    check = json.loads(metadata["deepfake_detect.check"])
    assert check["check_images"] >= 500 and check["flipped"] <= 0.03  # its export check held
    # trained for int8, it met the clause for a default precision, and auto scores with it
    measured = json.loads(metadata[DEFAULT_KEY])
    assert measured["heldout"]["images"] >= 3000
    for split in ("valid", "heldout"):
        for inputs in ("as-is", "jpeg-q75"):
            figures = measured[split][inputs]
            assert figures["labels_changed"] <= 0.01 and abs(figures["roc_auc_difference"]) <= 0.002
    assert load_detector().engine.path == engine.path
    size = sum(p.stat().st_size for p in BUNDLED_DIR.glob("model.*") if p.name != "model.onnx")
    assert size <= 25e6  # what the package ships: the weights and the int8 file


def test_an_exported_file_scores_alone_with_its_threshold_and_temperature(tiny, photos, tmp_path):
    output = tmp_path / "alone.onnx"
    report = export_onnx(tiny, output, images=[photos[0].parent])
    assert report.passed and report.check_kind == "real images" and report.max_abs_diff <= 1e-4
    alone = load_detector(output)
    assert alone.config.threshold == 0.4 and alone.config.temperature == 1.7
    assert alone.model_dir is None  # no config.json beside it: the metadata is all it has
    import onnx

    graph = onnx.load(str(output))
    assert not any(node.metadata_props for node in graph.graph.node)  # no stack traces
    assert str(tmp_path) not in output.read_bytes().decode("latin-1")  # no path of this machine
    assert np.allclose(scores(alone, photos), scores(load_detector(tiny), photos), atol=1e-6)
    with pytest.raises(ValueError, match="--engine onnx"):
        load_detector(output, engine="torch")


def test_a_failed_check_writes_nothing(tiny, tmp_path, monkeypatch):
    import deepfake_detect.inference.export as export

    monkeypatch.setattr(export, "FP32_TOLERANCE", -1.0)
    with pytest.raises(ExportCheckError, match="nothing written"):
        export_onnx(tiny, tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


def test_the_cached_export_follows_the_weights(tmp_path, photos):
    folder = make_model(tmp_path / "run", seed=1)
    before = scores(load_detector(folder), photos)
    make_model(folder, seed=2)  # new weights, same folder
    after = scores(load_detector(folder), photos)
    torch_after = scores(load_detector(folder, device="cpu", engine="torch"), photos)
    assert not np.allclose(before, after)
    assert np.max(np.abs(after - torch_after)) <= 1e-4


def test_a_folder_that_cannot_be_written_exports_into_the_cache(tmp_path, photos, monkeypatch):
    import deepfake_detect.inference.onnx_cache as onnx_cache

    folder = make_model(tmp_path / "shared-run", seed=4)
    real_access = onnx_cache.os.access
    monkeypatch.setattr(
        onnx_cache.os, "access", lambda p, mode: Path(p) != folder and real_access(p, mode)
    )
    detector = load_detector(folder)
    assert not (folder / ONNX_NAMES["fp32"]).exists()
    assert detector.engine.path.is_relative_to(onnx_cache.cache_dir())
    assert detector.engine.metadata[WEIGHTS_KEY] == detector.config.weights_sha256


def test_int8_is_calibrated_on_images_and_chosen_only_when_asked(tmp_path, photos):
    folder = make_model(tmp_path / "quantised", seed=5)
    with pytest.raises(ValueError, match="--images"):
        export_onnx(folder, folder / ONNX_NAMES["int8"], precision="int8")
    with pytest.raises(ModelError, match="no int8 ONNX file"):
        load_detector(folder, precision="int8")
    report = export_onnx(folder, folder / ONNX_NAMES["int8"], precision="int8", images=photos)
    assert report.precision == "int8" and report.check_images == len(photos)
    assert 0 <= report.flipped <= 1  # reported, not a gate: int8 differs by design
    detector = load_detector(folder, precision="int8")
    assert detector.engine.precision == "int8" and detector.info()["precision"] == "int8"
    assert load_detector(folder).engine.precision == "fp32"  # auto: fp32 while torch exports
    fp32 = scores(load_detector(folder, precision="fp32"), photos)
    assert np.max(np.abs(scores(detector, photos) - fp32)) < 0.2


def test_auto_scores_with_an_int8_file_only_when_it_records_meeting_the_default_clause(
    tmp_path, photos
):
    import onnx

    folder = make_model(tmp_path / "quantised", seed=6)
    int8 = folder / ONNX_NAMES["int8"]
    export_onnx(folder, int8, precision="int8", images=photos)
    assert load_detector(folder).engine.precision == "fp32"
    model = onnx.load(str(int8))
    model.metadata_props.add(key=DEFAULT_KEY, value=json.dumps({"heldout": {}}))
    onnx.save(model, str(int8))
    assert load_detector(folder).engine.precision == "int8"
    assert load_detector(folder, precision="fp32").engine.precision == "fp32"
    make_model(folder, seed=7)  # new weights: the int8 file is stale, whatever it records
    assert load_detector(folder).engine.precision == "fp32"


@pytest.mark.parametrize("calibration", ["Percentile", "Entropy"])
def test_int8_may_be_calibrated_by_histograms(tmp_path, photos, calibration):
    # scripts/int8_calibration.py compares ONNX Runtime's methods; the histogram ones are
    # merged a batch at a time, and must still give a file close to fp32
    folder = make_model(tmp_path / "quantised", seed=5)
    out = tmp_path / f"{calibration}.onnx"
    report = export_onnx(folder, out, precision="int8", images=photos, calibration=calibration)
    assert report.precision == "int8" and out.is_file()
    fp32 = scores(load_detector(folder, precision="fp32"), photos)
    assert np.max(np.abs(scores(load_detector(out), photos) - fp32)) < 0.2

NO_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "timm", "torchvision", "onnxscript"):
            raise ImportError(f"No module named {name!r}", name=name)
if sys.argv[1] == "block":
    sys.meta_path.insert(0, Block())
from deepfake_detect.cli import main
sys.argv = ["deepfake-detect", *sys.argv[2:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "timm", "torchvision"})
print("LOADED", ",".join(loaded), "CODE", code)
"""


def run_python(mode: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH, mode, *map(str, args)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_scoring_with_the_onnx_engine_never_imports_torch(tiny, photos, tmp_path):
    load_detector(tiny)  # the export exists before the subprocess scores
    result = run_python("watch", "predict", photos[0], "--model", tiny)
    assert "LOADED  CODE 0" in result.stdout, result.stderr
    torch_run = run_python("watch", "predict", photos[0], "--model", tiny, "--engine", "torch")
    assert "torch" in torch_run.stdout.split("LOADED")[1]  # the check can see torch


def test_without_torch_installed_an_exported_model_scores_and_exporting_says_what_to_install(
    tiny, photos, tmp_path
):
    exported = tmp_path / "exported.onnx"
    export_onnx(tiny, exported)
    result = run_python("block", "predict", photos[0], "--model", exported, "--format", "csv",
                        "--output", "-")  # fmt: skip
    assert "CODE 0" in result.stdout, result.stderr
    assert ",real," in result.stdout or ",fake," in result.stdout
    fresh = make_model(tmp_path / "never-exported", seed=6)
    failed = run_python("block", "predict", photos[0], "--model", fresh)
    assert "CODE 2" in failed.stdout
    assert "deepfake-detect[torch]" in failed.stderr and failed.stderr.count("\n") == 1
    export_onnx(fresh, fresh / ONNX_NAMES["int8"], precision="int8", images=photos)
    fallback = run_python("block", "predict", photos[0], "--model", fresh)
    assert "CODE 0" in fallback.stdout, fallback.stderr
    assert "scoring with its int8 file" in fallback.stderr


def test_rows_are_written_before_the_last_image_is_read(tiny, photos):
    detector = load_detector(tiny)
    out = io.StringIO()
    writer = PredictionWriter(out, "csv", {**detector.info(), "threshold": 0.4})
    seen_when_last_read = []

    def inputs():
        for i, path in enumerate(photos):
            if i == len(photos) - 1:
                seen_when_last_read.append(out.getvalue().count("\n"))
            yield path

    for prediction in detector.iter_scores(inputs(), batch_size=2, workers=1):
        writer.write(prediction.to_dict())
    writer.close()
    assert seen_when_last_read[0] >= 2  # the header and at least the first row
    assert out.getvalue().count("\n") == len(photos) + 1


def test_an_image_read_from_a_pipe_is_scored_whole(tiny, photos, tmp_path):
    # `predict /dev/stdin`: the pipe is read once, from its first byte.
    import os
    import threading

    detector = load_detector(tiny)
    fifo = tmp_path / "stdin"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as end:
            end.write(photos[0].read_bytes())

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    (got,) = detector.score([fifo])
    writer.join(timeout=10)
    assert got.error is None and got.score == pytest.approx(detector.score([photos[0]])[0].score)


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_decoding_threads_change_nothing_but_speed(tiny, photos, workers):
    detector = load_detector(tiny)
    expected = [p.to_dict() for p in detector.iter_scores(photos, batch_size=5, workers=0)]
    got = [p.to_dict() for p in detector.iter_scores(photos, batch_size=5, workers=workers)]
    assert got == expected


def test_work_run_on_threads_keeps_its_order_and_runs_each_item_once():
    import collections
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from deepfake_detect.inference.engines import run_on_threads

    calls, threads = collections.Counter(), set()
    both = threading.Barrier(2, timeout=30)  # broken, and the test failed, if one thread did all

    def load(item):
        calls[item] += 1
        if threading.get_ident() not in threads:  # a thread's first item waits for the other's
            threads.add(threading.get_ident())
            both.wait()
        time.sleep(0.02 if item % 5 == 0 else 0)  # uneven: a thread that is free takes more
        return item * 10

    with ThreadPoolExecutor(1) as pool:
        assert run_on_threads(pool, 2, load, list(range(23))) == [i * 10 for i in range(23)]
        assert run_on_threads(pool, 2, load, []) == []
        with pytest.raises(ZeroDivisionError):
            run_on_threads(pool, 2, lambda item: 1 / item, [3, 0, 4])
    assert set(calls.values()) == {1} and len(calls) == 23
    assert len(threads) == 2 and threading.get_ident() in threads  # this one and the pool's
    assert run_on_threads(None, 1, load, [1, 2]) == [10, 20]

    def fails_first(item):  # whichever thread takes item 0 fails: the other stops soon after
        calls[item] += 1
        if item == 0:
            raise KeyboardInterrupt
        time.sleep(0.02)

    calls.clear()
    with ThreadPoolExecutor(1) as pool, pytest.raises(KeyboardInterrupt):
        run_on_threads(pool, 2, fails_first, list(range(40)))
    assert len(calls) <= 3  # item 0, and at most the item each thread was on


def test_lanes_score_their_images_at_once_as_one_call_would(tiny, photos, tmp_path, monkeypatch):
    import threading

    from deepfake_detect.inference import engines

    path = export_onnx(tiny, tmp_path / "lanes.onnx", images=[photos[0].parent]).path
    batch = np.stack([load_detector(tiny).preprocess(p) for p in photos])
    one = engines.OnnxEngine(path, threads=2, lanes=1)
    two = engines.OnnxEngine(path, threads=2)
    assert (one.lanes, one.sub_batch, two.lanes, two.sub_batch) == (1, 2, 2, 1)
    assert two.session.get_session_options().intra_op_num_threads == 1
    callers, run = set(), two._run
    both = threading.Barrier(2, timeout=30)  # broken, and the test failed, if one thread did all

    def run_in_lane(part):
        if threading.get_ident() not in callers:  # a lane's first image waits for the other's
            callers.add(threading.get_ident())
            both.wait()
        return run(part)

    monkeypatch.setattr(two, "_run", run_in_lane)
    assert len(batch) >= 2
    np.testing.assert_allclose(two.logits(batch), one.logits(batch), atol=1e-5)
    assert len(callers) == 2 and len(two.logits(batch[:1])) == 1
    for lanes in (0, 3):
        with pytest.raises(ValueError, match="lanes must be 1 to 2"):
            engines.OnnxEngine(path, threads=2, lanes=lanes)
    monkeypatch.setattr(engines, "cpu_count", lambda: 2)
    assert load_detector(tiny).engine.lanes == 2 and load_detector(path).engine.lanes == 2
    for model in (tiny, path):
        assert load_detector(model, lanes=1).engine.lanes == 1


def test_without_decoding_threads_a_batch_is_decoded_on_every_cpu_between_engine_calls(
    tiny, photos, monkeypatch
):
    import threading
    import time

    from deepfake_detect.inference import engines

    monkeypatch.setattr(engines, "cpu_count", lambda: 2)
    detector = load_detector(tiny)
    expected = [p.to_dict() for p in detector.iter_scores(photos, batch_size=3, workers=1)]
    events, lock = [], threading.Lock()

    def timed(kind, work):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return work(*args, **kwargs)
            finally:
                with lock:
                    events.append((kind, start, time.perf_counter(), threading.get_ident()))

        return run

    monkeypatch.setattr(detector, "_safe_load", timed("decode", detector._safe_load))
    monkeypatch.setattr(detector, "score_arrays", timed("score", detector.score_arrays))
    got = [p.to_dict() for p in detector.iter_scores(photos, batch_size=3, workers=0)]
    assert got == expected
    decodes = [e for e in events if e[0] == "decode"]
    scores = [e for e in events if e[0] == "score"]
    assert len(decodes) == len(photos) and len(scores) == -(-len(photos) // 3)
    assert len({d[3] for d in decodes}) == 2  # on both CPUs
    for _, start, end, _ in scores:  # the engine never runs while an image is decoded
        assert all(d_end <= start or d_start >= end for _, d_start, d_end, _ in decodes)


def test_engine_threads_spin_only_where_nothing_decodes_beside_them(tiny, photos, monkeypatch):
    from deepfake_detect.inference import engines

    spinning, sleeping = engines.session_options(2, spin=True), engines.session_options(2)
    assert spinning.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert sleeping.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    for options in (spinning, sleeping):  # never spinning on once a call has returned
        assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    for cpus, decoded_between_calls in ((2, True), (4, False)):
        monkeypatch.setattr(engines, "cpu_count", lambda cpus=cpus: cpus)
        assert load_detector(tiny).engine.spin is decoded_between_calls
        assert load_detector(tiny, spin=False).engine.spin is False
    scores = [
        [p.to_dict() for p in load_detector(tiny, spin=spin).iter_scores(photos, batch_size=5)]
        for spin in (True, False)
    ]
    assert scores[0] == scores[1]


@pytest.mark.parametrize(("workers", "spin"), [(None, None), (0, True), (1, False)])
def test_predict_keeps_the_engine_from_spinning_beside_decoding_threads(
    tiny, photos, capsys, monkeypatch, workers, spin
):
    from deepfake_detect import inference

    asked = []

    def recording(*args, **kwargs):
        asked.append(kwargs.get("spin"))
        return load_detector(*args, **kwargs)

    monkeypatch.setattr(inference, "load_detector", recording)  # as predict imports it
    extra = [] if workers is None else ["--workers", workers]
    code, _, err = run_cli(["predict", photos[0], "--model", tiny, *extra], capsys, monkeypatch)
    assert code == 0, err
    assert asked == [spin]


def run_cli(args, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["deepfake-detect", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_a_corrupt_file_in_the_middle_of_a_streamed_run_gets_its_error_row(
    tiny, tmp_path, capsys, monkeypatch, suffix
):
    folder = write_class_folders(tmp_path / "images", 6, seed=7, fmt="JPEG")
    broken = folder / "real" / "real002.jpg"
    broken.write_bytes(broken.read_bytes()[:200])  # truncated mid-file
    output = tmp_path / f"out{suffix}"
    code, _, err = run_cli(["predict", folder, "--model", tiny, "--output", output,
                            "--batch-size", "4"], capsys, monkeypatch)  # fmt: skip
    assert code == 1 and "1 failed" in err
    text = output.read_text()
    if suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
    elif suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines()[1:]]
    else:
        document = json.loads(text)
        rows = document["predictions"]
        assert document["engine"] == "onnx" and document["threshold"] == 0.4
    assert len(rows) == 12
    failed = [r for r in rows if r["error"]]
    assert [Path(r["path"]).name for r in failed] == ["real002.jpg"]
    assert all(r["score"] not in (None, "") for r in rows if not r["error"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file


def test_an_interrupted_run_leaves_no_output(tiny, photos, tmp_path, capsys, monkeypatch):
    from deepfake_detect.inference.detector import Detector

    def interrupted(self, *args, **kwargs):
        yield from ()
        raise KeyboardInterrupt

    monkeypatch.setattr(Detector, "iter_scores", interrupted)
    output = tmp_path / "out.csv"
    code, _, err = run_cli(["predict", *photos, "--model", tiny, "--output", output],
                           capsys, monkeypatch)  # fmt: skip
    assert code == 130 and "nothing written" in err
    assert list(tmp_path.iterdir()) == []


def test_export_command_and_its_errors(tiny, photos, tmp_path, capsys, monkeypatch):
    output = tmp_path / "cli.onnx"
    code, out, _ = run_cli(["export", "--model", tiny, "--output", output, "--images",
                            photos[0].parent], capsys, monkeypatch)  # fmt: skip
    assert code == 0 and "12 real images" in out and output.is_file()
    for args, message in [
        (["--output", tmp_path / "x.pt"], "must end in .onnx"),
        (["--output", tmp_path / "x.onnx", "--precision", "fp8"], "--precision must be"),
        (["--output", tmp_path / "x.onnx", "--precision", "int8"], "needs --images"),
    ]:
        code, _, err = run_cli(["export", "--model", tiny, *args], capsys, monkeypatch)
        assert code == 2 and message in err and err.count("\n") == 1
    code, _, err = run_cli(["predict", photos[0], "--model", tiny, "--engine", "tensorrt"],
                           capsys, monkeypatch)  # fmt: skip
    assert code == 2 and "--engine must be onnx or torch" in err
    code, _, err = run_cli(["predict", photos[0], "--model", tiny, "--workers", "-1"],
                           capsys, monkeypatch)  # fmt: skip
    assert code == 2 and "--workers must be 0 or more" in err
    code, _, err = run_cli(["predict", photos[0], "--model", tiny, "--device", "cuda"],
                           capsys, monkeypatch)  # fmt: skip
    assert code == 2 and "use --engine torch" in err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a network")
    code, _, err = run_cli(["predict", photos[0], "--model", bad], capsys, monkeypatch)
    assert code == 2 and "not a usable ONNX model" in err


def test_benchmark_measures_every_figure_in_one_run(tiny, photos, monkeypatch):
    from deepfake_detect.inference import benchmark
    from deepfake_detect.inference.benchmark import format_benchmark, run_benchmark

    # a GEMM rate below what the engines reach: the table must say the limit is understated
    monkeypatch.setattr(benchmark, "gemm_windows", lambda threads, window: {"numpy": lambda: 1e3})
    result = run_benchmark(tiny, [photos[0].parent], seconds=0.2, memory_files=(4, 8))
    figures, ratios = result.figures, result.ratios()
    for key in (
        "eager_images_s",
        "onnx_fp32_images_s",
        "pipeline_images_s",
        "gemm_flop_s",
        "flops_per_image",
        "limit_images_s",
        "cold_start_s",
        "peak_rss_mb_large",
    ):
        assert figures[key] and figures[key] > 0, key  # fmt: skip
    assert figures["reduced_images_s"] is None  # no int8 file in this folder: said so
    assert figures["onnx_fp32_lanes"] == result.threads  # a lane per thread, against one lane
    assert result.threads == 1 or figures["onnx_fp32_images_s_lanes_1"] > 0
    assert any("int8" in note for note in result.notes)
    assert ratios["onnx_fp32_vs_eager"] == figures["onnx_fp32_images_s"] / figures["eager_images_s"]
    assert ratios["reduced_vs_onnx_fp32"] is None
    table = format_benchmark(result)
    assert "ONNX fp32 / fp32 limit" in table and "target" in table
    assert "the limit is understated" in table
    json.dumps(result.to_dict())


def test_gemm_rate_is_the_best_of_every_library_at_hand(monkeypatch):
    from deepfake_detect.inference import benchmark

    windows = benchmark.gemm_windows(1, window=0.01, n=64)
    assert {"numpy", "onnxruntime"} <= set(windows) <= {"numpy", "torch", "onnxruntime"}
    assert all(window() > 0 for window in windows.values())
    rate, source = benchmark.gemm_rate(1, window=0.01, n=64)
    assert rate > 0 and source in windows
    # ONNX Runtime's MatMul, the engine's own kernels: when it is the fastest, it sets the rate
    fastest = {"numpy": 2.0, "torch": 1.0, "onnxruntime": 3.0}
    monkeypatch.setattr(benchmark, "best_interleaved", lambda w: {k: fastest[k] for k in w})
    assert benchmark.gemm_rate(1, window=0.01, n=64) == (3.0, "onnxruntime")


def test_the_figures_of_a_ratio_are_measured_in_turn_and_each_keeps_its_best():
    from deepfake_detect.inference.benchmark import best_interleaved

    calls = []

    def window(name, rates):
        rates = iter(rates)
        return lambda: calls.append(name) or next(rates)

    best = best_interleaved(
        {"model": window("model", [5, 9, 7]), "limit": window("limit", [4, 3, 6])}, rounds=3
    )
    assert calls == ["model", "limit"] * 3  # a window of each in every round
    assert best == {"model": 9, "limit": 6}


def test_gemm_model_is_a_matmul_without_the_onnx_package():
    import onnxruntime as ort

    from deepfake_detect.inference.benchmark import matmul_model

    model = matmul_model(48)
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 48, 48), dtype=np.float32)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"a": a, "b": b})[0], a @ b, rtol=1e-4, atol=1e-4)
    onnx = pytest.importorskip("onnx")
    parsed = onnx.load_from_string(model)
    onnx.checker.check_model(parsed, full_check=True)
    assert [d.dim_value for d in parsed.graph.input[0].type.tensor_type.shape.dim] == [48, 48]


def test_benchmark_options_are_checked(capsys, monkeypatch):
    code, _, err = run_cli(["benchmark", "--memory-files", "10"], capsys, monkeypatch)
    assert code == 2 and "--memory-files" in err


def test_evaluate_takes_the_engine_and_an_onnx_file(tiny, tmp_path, capsys, monkeypatch):
    data = write_class_folders(tmp_path / "data", 8, seed=8)
    exported = tmp_path / "tiny.onnx"
    export_onnx(tiny, exported)
    results = {}
    for name, model, engine in [("onnx", tiny, "onnx"), ("torch", tiny, "torch"),
                                ("file", exported, "onnx")]:  # fmt: skip
        output = tmp_path / f"eval-{name}"
        code, _, err = run_cli(["evaluate", "--model", model, "--data", data, "--output", output,
                                "--engine", engine, "-q"], capsys, monkeypatch)  # fmt: skip
        assert code == 0, err
        results[name] = json.loads((output / "metrics.json").read_text())
    assert results["onnx"]["engine"] == "onnx" and results["torch"]["engine"] == "torch"
    for name in ("torch", "file"):
        assert results[name]["roc_auc"] == pytest.approx(results["onnx"]["roc_auc"], abs=1e-6)
        assert results[name]["loss"] == pytest.approx(results["onnx"]["loss"], abs=1e-4)
