"""Scoring engines: what turns a batch of preprocessed images into logits.

`OnnxEngine` (the default) runs an exported network on ONNX Runtime and never imports torch;
`TorchEngine` runs the PyTorch network itself (and is what training, explanations and GPUs use).
Both return float64 logits, before the temperature: the `Detector` applies temperature and
threshold, so every engine scores the same way.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from deepfake_detect.errors import ModelError
from deepfake_detect.inference.onnx_files import PRECISION_KEY

ENGINES = ("onnx", "torch")
ONNX_LANE_SUB_BATCH = 1
"""Images per call in a lane of one thread (`OnnxEngine`'s default): on the Zen 5, 312-318
images/s in calls of 1, 290-322 in calls of 2, 240-262 in calls of 8 (`deepfake-detect
benchmark`, three runs)."""
ONNX_SUB_BATCH = 2
"""Images per ONNX Runtime call in a lane of several threads. On the 2-core machines here,
lite0 at 256 px ran fp32 at 90 images/s in calls of 1-2 images against 62-71 in calls of 32
(activations that stay in the CPU's caches), and int8 at 200 against 155; memory drops with
it (`deepfake-detect benchmark` shows the figures for 1, 2, 8 and 32)."""


class Engine(Protocol):
    name: str  # "onnx" or "torch"
    precision: str  # "fp32" or "int8"

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits (float64, shape (N,)) for a batch of preprocessed images (N, 3, H, W)."""
        ...


def check_engine_name(name: str) -> str:
    if name not in ENGINES:
        raise ValueError(f"--engine must be {' or '.join(ENGINES)}, not {name!r}")
    return name


def cpu_count() -> int:
    """The CPUs this process may run on (a container's or taskset's share, not the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def decodes_between_calls() -> bool:
    """Whether scoring decodes each batch between the engine's calls by default (two CPUs or
    fewer) rather than in a thread beside it (`detector.default_workers`). Only then may ONNX
    Runtime's threads spin: nothing else wants the CPUs while the engine runs."""
    return cpu_count() <= 2


class TorchEngine:
    """The PyTorch network on a device (bf16 autocast on a GPU)."""

    name = "torch"
    precision = "fp32"

    def __init__(self, net: Any, device: Any) -> None:
        from deepfake_detect.devices import channels_last

        self.net = channels_last(net.eval())
        self.device = device

    def logits(self, batch: np.ndarray) -> np.ndarray:
        import torch

        from deepfake_detect.devices import autocast, to_device

        with torch.inference_mode(), autocast(self.device):
            out = self.net(to_device(torch.from_numpy(batch), self.device)).float()
        return out.cpu().numpy().astype(np.float64).reshape(-1)


def session_options(threads: int | None = None, spin: bool = False):
    """ONNX Runtime options: all graph optimisations and `threads` intra-op threads (default:
    the CPUs this process may use).

    Without `spin` the threads sleep whenever they wait, between operators too, so that threads
    decoding beside the engine are not starved. With it they spin between the operators of a
    call and stop when the call returns (`session.force_spinning_stop`), which is right when
    nothing runs beside the engine: on the Zen 5, `python scripts/pipeline_ab.py --repeats 10`
    against sleeping threads gave the model alone 274-301 images/s against 243-276, and the
    pipeline (decoding between calls) 253-267 against 219-257, faster in each of the ten pairs.
    (Spinning that went on after each call had slowed the pipeline on an earlier machine.)"""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or cpu_count()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    options.log_severity_level = 3  # errors only: no warnings about unused initialisers
    return options


def run_on_threads(pool: ThreadPoolExecutor | None, threads: int, work, items: list) -> list:
    """`[work(x) for x in items]` on `threads` threads: this one and `threads - 1` of `pool`,
    each taking the next item when it is done with one (one task per thread rather than one
    per item: each task handed over wakes a thread, and on two CPUs that cost about as much
    as decoding the 256 px face it overlapped). An exception in any thread, or Ctrl-C in
    this one, stops the others after the item they are on, and is raised here."""
    results: list = [None] * len(items)
    claim = itertools.count()  # next() on it is atomic: no item is taken twice
    failed = threading.Event()  # once one thread fails (or is interrupted), the others stop

    def run() -> None:
        try:
            while not failed.is_set() and (i := next(claim)) < len(items):
                results[i] = work(items[i])
        except BaseException:
            failed.set()
            raise

    helpers = min(threads, len(items)) - 1
    tasks = [pool.submit(run) for _ in range(helpers)] if pool is not None else []
    try:
        run()
    finally:
        wait(tasks)  # each helper ends after its current item at most
    for task in tasks:
        task.result()
    return results


class OnnxEngine:
    """An exported network (`inference.onnx_files`) on ONNX Runtime's CPU provider.

    Its `threads` work in `lanes`: each lane scores its own images with `threads // lanes` of
    ONNX Runtime's threads, in calls of `sub_batch` images, and the lanes run at once. By
    default every thread is a lane of its own: an image per CPU, and no CPU waits for another
    between the network's operators (within one call, ONNX Runtime's threads meet after each
    of its 60-odd operators, and a thread the host has descheduled holds up the others). On
    the Zen 5 two lanes scored 300-325 images/s where one lane of two spinning threads scored
    210-320, the lanes faster in every one of 20 alternating pairs while the host was busy
    and level with it while it was quiet (docs/experiments.md)."""

    name = "onnx"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        threads: int | None = None,
        sub_batch: int | None = None,
        spin: bool | None = None,
        lanes: int | None = None,
    ) -> None:
        """`spin`: let ONNX Runtime's threads spin during a call (`session_options`; only
        lanes of more than one thread have threads to spin); by default where the batch is
        decoded between calls (`decodes_between_calls`). `lanes`: images scored at once, one
        call each (default: one per thread)."""
        import onnxruntime as ort

        self.path = Path(path)
        threads = threads or cpu_count()
        self.lanes = threads if lanes is None else lanes
        if not 1 <= self.lanes <= threads:
            raise ValueError(f"lanes must be 1 to {threads} (the threads), got {self.lanes}")
        self.sub_batch = sub_batch or (ONNX_LANE_SUB_BATCH if self.lanes > 1 else ONNX_SUB_BATCH)
        self.spin = decodes_between_calls() if spin is None else spin
        self._pool = ThreadPoolExecutor(self.lanes - 1) if self.lanes > 1 else None
        options = session_options(threads // self.lanes, self.spin)
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own exception types for bad files
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{self.path}: not a usable ONNX model ({reason})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelError(f"{self.path}: expected one image input (N, 3, H, W)")
        self.input_name = inputs[0].name
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.precision = self.metadata.get(PRECISION_KEY, "fp32")

    def logits(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, np.float32)
        parts = [batch[i : i + self.sub_batch] for i in range(0, len(batch), self.sub_batch)]
        outs = run_on_threads(self._pool, self.lanes, self._run, parts)
        return np.concatenate(outs).astype(np.float64).reshape(-1)

    def _run(self, part: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: part})[0]
