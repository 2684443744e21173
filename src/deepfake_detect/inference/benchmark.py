"""`deepfake-detect benchmark`: how fast each engine scores, against what this machine allows.

Every figure comes from one run on one machine, so the ratios hold even when other work shares
the CPU: PyTorch eager, ONNX fp32 and int8 images/s on the same batch; the whole `predict`
pipeline (reading, decoding, resizing, scoring) on JPEG files; the fp32 GEMM rate at the same
thread count (best of numpy's BLAS, torch and ONNX Runtime's own MatMul), which with the
model's FLOPs sets a limit in images/s; the cold start of one `predict` in a new process; and
the peak memory of scoring 1,000 and 10,000 files.

The rates that a ratio divides (the engines, the pipeline, the GEMM rate of each library) are
measured in turn, a short window of each per round, and each keeps its best window: so the two
sides of a ratio come from the same minute of a shared host whose load drifts. The variants
that justify the defaults (images per ONNX Runtime call, decoding threads) follow, each on its
own.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepfake_detect.inference.engines import cpu_count

TARGETS = {
    "onnx_fp32_vs_eager": 5.0,
    "onnx_fp32_vs_limit": 0.75,
    "reduced_vs_onnx_fp32": 1.5,
    "pipeline_vs_model": 0.90,
    "cold_start_s": 1.0,
    "memory_10k_vs_1k": 1.1,
}


@dataclass
class Benchmark:
    model: str
    threads: int
    batch_size: int
    figures: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def ratios(self) -> dict[str, float | None]:
        f = self.figures

        def ratio(a: str, b: str) -> float | None:
            return None if not f.get(a) or not f.get(b) else f[a] / f[b]

        return {
            "onnx_fp32_vs_eager": ratio("onnx_fp32_images_s", "eager_images_s"),
            "onnx_fp32_vs_limit": ratio("onnx_fp32_images_s", "limit_images_s"),
            "reduced_vs_onnx_fp32": ratio("reduced_images_s", "onnx_fp32_images_s"),
            "pipeline_vs_model": ratio("pipeline_images_s", "default_images_s"),
            "cold_start_s": f.get("cold_start_s"),
            "memory_10k_vs_1k": ratio("peak_rss_mb_large", "peak_rss_mb_small"),
        }

    def to_dict(self) -> dict:
        return {
            "model": self.model, "threads": self.threads, "batch_size": self.batch_size,
            "machine": machine_description(), "figures": self.figures,
            "ratios": self.ratios(), "targets": TARGETS, "notes": self.notes,
        }  # fmt: skip


def machine_description() -> str:
    """The CPU's name with its family and model numbers (two machines both called "AMD EPYC"
    can be generations apart, with twice the matrix-multiply rate), its AVX-512 support, the
    CPUs available and Python's version."""
    import platform

    name = platform.processor() or platform.machine()
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if not key.strip():
                break  # the first processor's block is enough
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = info.get("model name", name)
    if "cpu family" in info and "model" in info:
        name += f" (family {info['cpu family']}, model {info['model']})"
    if "flags" in info:
        name += ", AVX-512" if "avx512f" in info["flags"].split() else ", no AVX-512"
    return f"{name}, {cpu_count()} CPUs available, Python {platform.python_version()}"


ROUNDS = 5
"""Every rate is the best of five timed windows, like the GEMM rate it is compared with: on a
shared machine the best window is the one least disturbed, for every figure alike."""


def throughput(score, batch: np.ndarray, seconds: float) -> float:
    """Images/s of `score(batch)` after one warm-up call: the best of ROUNDS windows of at
    least seconds / ROUNDS each."""
    score(batch)
    window = rate_window(lambda: score(batch), len(batch), seconds / ROUNDS)
    return best_interleaved({"score": window})["score"]


def rate_window(work, units: float, seconds: float):
    """One window of a measurement: `work()` called until `seconds` have passed (at least
    once); it returns units per second."""

    def window() -> float:
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds or calls == 0:
            work()
            calls += 1
        return units * calls / elapsed

    return window


def best_interleaved(windows: dict, rounds: int = ROUNDS) -> dict[str, float]:
    """The best rate of each measurement over `rounds` rounds, each round one window of every
    measurement in turn. The figures a ratio divides then come from the same minute: on a
    shared host whose load moves a rate by a fifth within minutes, measuring one figure after
    the other moved the fp32 / limit ratio between 0.65 and 0.77 in three runs of one code."""
    best = dict.fromkeys(windows, 0.0)
    for _ in range(rounds):
        for name, window in windows.items():
            best[name] = max(best[name], window())
    return best


def gemm_windows(threads: int, window: float = 1.0, n: int = 2048) -> dict:
    """One window function per library at hand (numpy's BLAS, torch, ONNX Runtime's MatMul),
    each returning the fp32 matrix-multiply rate in FLOP/s at `threads` threads. ONNX Runtime's
    is the kernel library the engine runs on, and the one that knows the newest CPUs: on an AMD
    EPYC of the Zen 5 generation numpy's OpenBLAS took its AVX2 path (232-255 GFLOP/s) and
    torch's did no better, while ONNX Runtime reached 441-470 (2026-12-06), so a limit from the
    first two was exceeded by the engine it bounds."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2 * n**3
    windows = {}
    numpy_window = rate_window(lambda: a @ b, flops, window)

    def numpy_rate() -> float:
        with threadpool_limits(threads):
            return numpy_window()

    windows["numpy"] = numpy_rate
    try:
        import torch
    except ImportError:
        pass
    else:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        torch_window = rate_window(lambda: torch.mm(ta, tb), flops, window)

        def torch_rate() -> float:
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                return torch_window()
            finally:
                torch.set_num_threads(before)

        windows["torch"] = torch_rate
    import onnxruntime as ort

    from deepfake_detect.inference.engines import session_options

    options = session_options(threads)
    session = ort.InferenceSession(matmul_model(n), options, providers=["CPUExecutionProvider"])
    feeds = {"a": a, "b": b}
    session.run(None, feeds)  # the first call allocates
    windows["onnxruntime"] = rate_window(lambda: session.run(None, feeds), flops, window)
    return windows


def gemm_rate(threads: int, window: float = 1.0, n: int = 2048) -> tuple[float, str]:
    """The best fp32 matrix-multiply rate (FLOP/s) at `threads` of the libraries at hand
    (`gemm_windows`), each the best of ROUNDS windows of `window` seconds, and its library."""
    rates = best_interleaved(gemm_windows(threads, window, n))
    best = max(rates, key=rates.get)
    return rates[best], best


def matmul_model(n: int) -> bytes:
    """An ONNX model (serialised ModelProto, opset 17) of one fp32 MatMul c = a @ b of two
    n x n inputs. Written here field by field, since the `onnx` package comes only with the
    [torch] extra and a scoring-only install benchmarks too."""

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
            value >>= 7
            if not value:
                return bytes(out)

    def field_(number: int, payload: bytes | int) -> bytes:
        if isinstance(payload, int):  # wire type 0: varint
            return varint(number << 3) + varint(payload)
        return varint(number << 3 | 2) + varint(len(payload)) + payload  # wire type 2

    def matrix(name: str) -> bytes:  # ValueInfoProto: an n x n float tensor
        dims = b"".join(field_(1, field_(1, n)) for _ in range(2))
        tensor = field_(1, 1) + field_(2, dims)  # elem_type FLOAT, shape
        return field_(1, name.encode()) + field_(2, field_(1, tensor))

    node = field_(1, b"a") + field_(1, b"b") + field_(2, b"c") + field_(4, b"MatMul")
    graph = field_(1, node) + field_(2, b"gemm") + field_(11, matrix("a"))
    graph += field_(11, matrix("b")) + field_(12, matrix("c"))
    return field_(1, 8) + field_(7, graph) + field_(8, field_(1, b"") + field_(2, 17))


def model_flops(model_dir: Path) -> float | None:
    """FLOPs per image (2 per multiply-add), counted by torch on one image."""
    try:
        import torch
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return None
    from deepfake_detect.models.checkpoint import load_model_weights
    from deepfake_detect.models.config import read_config
    from deepfake_detect.models.loading import model_from_config

    config = read_config(model_dir)
    net = model_from_config(config, load_model_weights(model_dir, config)).eval()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        net(torch.zeros(1, 3, config.image_size, config.image_size))
    return float(counter.get_total_flops())


def sample_jpegs(folder: Path, n: int, side: int) -> list[Path]:
    """Photo-like JPEG files (smooth colour fields with grain) for runs given no --images."""
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        low = rng.uniform(0, 255, (6, 6, 3)).astype(np.uint8)
        field = np.asarray(Image.fromarray(low).resize((side, side), Image.Resampling.BICUBIC))
        pixels = np.clip(field + rng.normal(0, 10, field.shape), 0, 255).astype(np.uint8)
        path = folder / f"sample-{i:03d}.jpg"
        Image.fromarray(pixels).save(path, "JPEG", quality=90)
        out.append(path)
    return out


def command_line() -> list[str]:
    found = shutil.which("deepfake-detect")
    return [found] if found else [sys.executable, "-m", "deepfake_detect.cli"]


PEAK_MEMORY = """
import atexit, os, sys
def report():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM"))
    with open(os.environ["DEEPFAKE_DETECT_PEAK_FILE"], "w") as out:
        out.write(peak)
atexit.register(report)
from deepfake_detect.cli import main
sys.argv = ["deepfake-detect", *sys.argv[1:]]
main()
"""
"""Runs the CLI and writes its peak resident memory (VmHWM, kB) at exit. The peak is read in
the process itself: what the kernel reports to a parent (wait4's ru_maxrss) includes the
parent's memory that the child held between fork and exec."""


def run_timed(args: list[str]) -> float:
    """Wall seconds of one command in a new process."""
    start = time.perf_counter()
    result = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if result.returncode != 0:
        error = result.stderr.decode(errors="replace").strip()[-300:]
        raise RuntimeError(f"{' '.join(args[:4])} ... failed: {error}")
    return time.perf_counter() - start


def peak_memory_mb(cli_args: list[str], tmp: Path) -> float:
    """Peak resident memory (MB) of `deepfake-detect CLI_ARGS` in a new process."""
    peak_file = tmp / "peak.txt"
    env = {**os.environ, "DEEPFAKE_DETECT_PEAK_FILE": str(peak_file)}
    result = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY, *cli_args], stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    if result.returncode != 0:
        error = result.stderr.decode(errors="replace").strip()[-300:]
        raise RuntimeError(f"predict for the memory run failed: {error}")
    return int(peak_file.read_text()) / 1024


def image_batch(detector, files: list[Path], batch_size: int) -> np.ndarray:
    arrays = [detector.preprocess(path) for path in files[:batch_size]]
    while len(arrays) < batch_size:
        arrays.extend(arrays[: batch_size - len(arrays)])
    return np.stack(arrays).astype(np.float32)


def run_benchmark(
    model: str | os.PathLike | None = None,
    images: list[Path] | None = None,
    *,
    seconds: float = 10.0,
    batch_size: int = 32,
    memory_files: tuple[int, int] = (1000, 10000),
    say=lambda message: None,
) -> Benchmark:
    """Measure every figure of the table in one run (see the module's docstring)."""
    from deepfake_detect.inference.detector import load_detector, resolve_model
    from deepfake_detect.inference.inputs import expand_paths

    if model is not None and Path(model).suffix.lower() == ".onnx":
        raise ValueError("benchmark compares engines: give a model folder, not a .onnx file")
    model_dir = resolve_model(model)
    bench = Benchmark(str(model or "bundled"), cpu_count(), batch_size)
    f = bench.figures
    with tempfile.TemporaryDirectory(prefix="deepfake-detect-benchmark-") as tmp:
        if images:
            files = expand_paths(images)
        else:
            files = sample_jpegs(Path(tmp), 64, 256)
            bench.notes.append("pipeline and memory on synthetic 256 px JPEGs (no --images)")
        default = load_detector(model_dir)
        batch = image_batch(default, files, batch_size)
        say(
            f"engines, the pipeline and the fp32 GEMM rate at {bench.threads} threads, batch "
            f"{batch_size}: {ROUNDS} rounds of a {seconds / ROUNDS:g} s window each"
        )
        window = seconds / ROUNDS
        windows = engine_windows(bench, model_dir, batch, window)
        windows["pipeline"] = pipeline_window(bench, default, files, window)
        flops = model_flops(model_dir)
        gemm = {f"gemm {name}": w for name, w in gemm_windows(bench.threads, window).items()}
        best = best_interleaved({**windows, **gemm})
        f["eager_images_s"] = best.get("eager")
        f["onnx_fp32_images_s"] = best["onnx_fp32"]
        f["reduced_images_s"] = best.get("int8")
        f["default_images_s"] = f[
            "reduced_images_s" if default.engine.precision == "int8" else "onnx_fp32_images_s"
        ]
        bench.notes.append(f"default engine: onnx {default.engine.precision}")
        f["pipeline_images_s"] = best["pipeline"]
        source = max(gemm, key=best.get)
        f |= {"flops_per_image": flops, "gemm_flop_s": best[source]}
        f["limit_images_s"] = best[source] / flops if flops else None
        bench.notes.append(
            f"GEMM rate: 2048 x 2048 fp32, best of numpy, torch and onnxruntime "
            f"({source.removeprefix('gemm ')}); every rate of a ratio is the best of {ROUNDS} "
            f"windows of {window:g} s, taken in turn with the others' (a round of each, "
            f"{ROUNDS} times)"
        )
        say("images per call and decoding threads (each on its own)")
        measure_variants(bench, model_dir, default, files, batch, window)
        fastest = max(f.get("onnx_fp32_images_s") or 0.0, f.get("eager_images_s") or 0.0)
        if f["limit_images_s"] and fastest > f["limit_images_s"]:
            bench.notes.append(
                "an fp32 engine ran faster than the fp32 limit: no library measured here reaches "
                "this CPU's matrix-multiply peak, so the limit is understated"
            )
        say("cold start and peak memory in new processes")
        measure_processes(bench, model, files, Path(tmp), memory_files)
    return bench


def engine_windows(bench: Benchmark, model_dir: Path, batch: np.ndarray, window: float) -> dict:
    """A window function per engine (`eager` where torch is installed, `onnx_fp32`, `int8`
    where the folder has an int8 file), each warmed up by one call; absent ones are noted."""
    from deepfake_detect.inference.onnx_cache import fresh_engine, onnx_engine_for_folder
    from deepfake_detect.inference.onnx_files import weights_hash

    engines = {}
    try:
        import torch

        from deepfake_detect.inference.detector import load_detector
    except ImportError:
        bench.notes.append("PyTorch eager not measured: torch is not installed")
    else:
        torch.set_num_threads(bench.threads)
        engines["eager"] = load_detector(model_dir, device="cpu", engine="torch").engine
    engines["onnx_fp32"] = onnx_engine_for_folder(model_dir, "fp32", threads=bench.threads)
    int8 = fresh_engine(model_dir, "int8", weights_hash(model_dir), threads=bench.threads)
    if int8 is None:
        bench.notes.append("no int8 file: make one with `deepfake-detect export --precision int8`")
    else:
        engines["int8"] = int8
    windows = {}
    for name, engine in engines.items():
        engine.logits(batch)  # warm-up
        windows[name] = rate_window(functools.partial(engine.logits, batch), len(batch), window)
    return windows


def pipeline_window(bench: Benchmark, detector, files: list[Path], window: float, workers=None):
    """A window function of the `predict` pipeline: images/s from file names to scores, over
    enough copies of `files` for about `window` seconds (sized by one pass over them, which
    also warms it up); `workers` decoding threads beside the engine (default: the default)."""

    def one_pass(inputs) -> float:
        start = time.perf_counter()
        for _ in detector.iter_scores(inputs, batch_size=bench.batch_size, workers=workers):
            pass
        return len(inputs) / (time.perf_counter() - start)

    n = max(len(files), int(one_pass(files) * window))
    inputs = (files * math.ceil(n / len(files)))[:n]
    return functools.partial(one_pass, inputs)


def measure_variants(bench, model_dir: Path, detector, files, batch: np.ndarray, window: float):
    """The evidence for the defaults, each measured on its own: fp32 images per ONNX Runtime
    call (`engines.ONNX_LANE_SUB_BATCH`), the threads in one lane (all on one call at a time,
    spinning) rather than one lane each (`engines.OnnxEngine`), and 0, 1 and 2 decoding threads
    beside the engine
    (`detector.default_workers`; the default's figure is the interleaved one), each with the
    engine `predict --workers N` loads: spinning only where nothing decodes beside it."""
    from deepfake_detect.inference.detector import default_workers, load_detector
    from deepfake_detect.inference.engines import OnnxEngine
    from deepfake_detect.inference.onnx_cache import onnx_engine_for_folder

    f = bench.figures
    fp32 = onnx_engine_for_folder(model_dir, "fp32", threads=bench.threads)
    for size in (1, 2, 8, 32):
        fp32.sub_batch = size
        f[f"onnx_fp32_images_s_sub_batch_{size}"] = throughput(fp32.logits, batch, window * 2.5)
    f["onnx_fp32_lanes"] = fp32.lanes
    if fp32.lanes > 1:
        one_lane = OnnxEngine(fp32.path, threads=bench.threads, lanes=1, spin=True)
        f["onnx_fp32_images_s_lanes_1"] = throughput(one_lane.logits, batch, window * 2.5)
    for workers in (0, 1, 2):
        key = f"pipeline_images_s_workers_{workers}"
        if workers == default_workers():
            f[key] = f["pipeline_images_s"]
            continue
        if detector.engine.spin != (workers == 0):
            detector = load_detector(model_dir, spin=workers == 0)
        measure = pipeline_window(bench, detector, files, window, workers)
        f[key] = best_interleaved({"pipeline": measure})["pipeline"]


def measure_processes(bench, model, files: list[Path], tmp: Path, memory_files) -> None:
    options = ["--quiet", "predict", *(["--model", str(model)] if model is not None else [])]
    starts = [run_timed([*command_line(), *options, str(files[0])]) for _ in range(3)]
    bench.figures["cold_start_s"] = min(starts)
    for name, count in zip(("small", "large"), memory_files, strict=True):
        listing = (files * math.ceil(count / len(files)))[:count]
        output = tmp / f"memory-{count}.jsonl"
        peak = peak_memory_mb([*options, *map(str, listing), "--output", str(output)], tmp)
        bench.figures[f"memory_files_{name}"] = count
        bench.figures[f"peak_rss_mb_{name}"] = peak


def format_benchmark(bench: Benchmark) -> str:
    """The figures, then the ratios against their targets."""
    f, r = bench.figures, bench.ratios()

    def num(value, spec=".1f"):
        return "n/a" if value is None else format(value, spec)

    lines = [
        f"model {bench.model}, {bench.threads} threads, batch {bench.batch_size}",
        f"machine: {machine_description()}",
        "",
        f"PyTorch eager           {num(f.get('eager_images_s')):>8} images/s",
        f"ONNX fp32               {num(f.get('onnx_fp32_images_s')):>8} images/s "
        f"(images per call 1/2/8/32: {num(f.get('onnx_fp32_images_s_sub_batch_1'))}/"
        f"{num(f.get('onnx_fp32_images_s_sub_batch_2'))}/"
        f"{num(f.get('onnx_fp32_images_s_sub_batch_8'))}/"
        f"{num(f.get('onnx_fp32_images_s_sub_batch_32'))}; "
        f"1 lane instead of {f.get('onnx_fp32_lanes')}: "
        f"{num(f.get('onnx_fp32_images_s_lanes_1'))})",
        f"ONNX int8               {num(f.get('reduced_images_s')):>8} images/s",
        f"predict pipeline        {num(f.get('pipeline_images_s')):>8} images/s "
        f"(decoding threads 0/1/2: {num(f.get('pipeline_images_s_workers_0'))}/"
        f"{num(f.get('pipeline_images_s_workers_1'))}/{num(f.get('pipeline_images_s_workers_2'))})",
        f"FLOPs per image         {num((f.get('flops_per_image') or 0) / 1e9, '.3f'):>8} GFLOP",
        f"fp32 GEMM rate          {num(f['gemm_flop_s'] / 1e9):>8} GFLOP/s",
        f"fp32 limit              {num(f.get('limit_images_s')):>8} images/s",
        f"cold start (predict)    {num(f.get('cold_start_s'), '.2f'):>8} s",
        f"peak memory             {num(f.get('peak_rss_mb_small'), '.0f'):>8} MB for "
        f"{f.get('memory_files_small')} files, {num(f.get('peak_rss_mb_large'), '.0f')} MB for "
        f"{f.get('memory_files_large')}",
        "",
        f"{'ratio':<34} {'measured':>9} {'target':>8}",
    ]
    labels = {
        "onnx_fp32_vs_eager": "ONNX fp32 / eager",
        "onnx_fp32_vs_limit": "ONNX fp32 / fp32 limit",
        "reduced_vs_onnx_fp32": "int8 / ONNX fp32",
        "pipeline_vs_model": "predict pipeline / model only",
        "cold_start_s": "cold start, seconds",
        "memory_10k_vs_1k": "peak memory, large / small",
    }
    for key, label in labels.items():
        target = TARGETS[key]
        sign = "<" if key in ("cold_start_s", "memory_10k_vs_1k") else ">="
        lines.append(f"{label:<34} {num(r[key], '.2f'):>9} {sign + format(target, 'g'):>8}")
    lines += [f"note: {note}" for note in bench.notes]
    return "\n".join(lines)
