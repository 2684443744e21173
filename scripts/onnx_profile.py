"""Where ONNX Runtime spends its time on a model's fp32 network, and what that allows.

Issue 14 asks fp32 ONNX to reach 75% of the machine's fp32 GEMM limit (the GEMM rate divided
by the model's FLOPs per image). This script runs the network the way the engine does (its
session options, calls of `engines.ONNX_SUB_BATCH` images) with ONNX Runtime's profiler on,
and prints:

- the share of kernel time and of FLOPs of each kind of operator (1x1, 3x3 and depthwise
  convolutions, the rest), and each kind's rate in GFLOP/s;
- every convolution in order, with its output shape and rate;
- the ceiling this leaves: images/s if every 1x1 convolution ran at the GEMM rate, and if it
  ran at the best rate any 1x1 convolution of this network reaches, with every other operator
  as measured, each against the GEMM limit.

The convolutions' FLOPs come from the exported file itself (ONNX shape inference), matched in
order to the nodes of the graph that ONNX Runtime optimised (its NCHWc layout keeps one Conv
per original convolution).

    python scripts/onnx_profile.py [--model DIR] [--calls 300]
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

import numpy as np


def conv_flops(path: Path, batch: int) -> list[tuple[str, float, list[int]]]:
    """(kind, FLOPs, output shape) of every Conv of the file, in graph order."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    model = shape_inference.infer_shapes(model)
    values = list(model.graph.value_info) + list(model.graph.output)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}
    weights = {i.name: numpy_helper.to_array(i).shape for i in model.graph.initializer}
    convs = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        w, out = weights[node.input[1]], shapes[node.output[0]]
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        kind = "depthwise" if group > 1 else f"{w[2]}x{w[3]}"
        convs.append((kind, 2.0 * np.prod(out) * w[1] * w[2] * w[3], out))
    return convs


def profile(path: Path, threads: int, batch: int, calls: int) -> tuple[dict, list[str], float]:
    """Mean kernel time per call of every node (by name), the optimised graph's Conv nodes in
    order, and images/s with the profiler on."""
    import time

    import onnx
    import onnxruntime as ort

    from deepfake_detect.inference.engines import session_options

    with tempfile.TemporaryDirectory() as tmp:
        optimised = Path(tmp) / "optimised.onnx"
        options = session_options(threads)
        options.optimized_model_filepath = str(optimised)
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        conv_nodes = [n.name for n in onnx.load(str(optimised)).graph.node if n.op_type == "Conv"]
        options = session_options(threads)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        x = np.random.default_rng(0).standard_normal((batch, 3, *input_size(session)))
        x = x.astype(np.float32)
        for _ in range(20):
            session.run(None, {name: x})
        start = time.perf_counter()
        for _ in range(calls):
            session.run(None, {name: x})
        rate = calls * batch / (time.perf_counter() - start)
        events = json.loads(Path(session.end_profiling()).read_text())
    total, count = collections.Counter(), collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            node = event["name"].removesuffix("_kernel_time")
            total[node] += event["dur"] * 1e-6
            count[node] += 1
    return {node: total[node] / count[node] for node in total}, conv_nodes, rate


def input_size(session) -> tuple[int, int]:
    height, width = session.get_inputs()[0].shape[2:]
    if not isinstance(height, int) or not isinstance(width, int):
        raise SystemExit("error: the model's input has no fixed height and width")
    return height, width


def main() -> None:
    from deepfake_detect.errors import DetectorError
    from deepfake_detect.inference.benchmark import gemm_rate
    from deepfake_detect.inference.detector import resolve_model
    from deepfake_detect.inference.engines import (
        ONNX_LANE_SUB_BATCH,
        ONNX_SUB_BATCH,
        cpu_count,
    )
    from deepfake_detect.inference.onnx_cache import onnx_engine_for_folder

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="a run folder (default: the bundled model)")
    parser.add_argument("--calls", type=int, default=300, help="profiled calls")
    args = parser.parse_args()
    if args.calls < 1:
        raise SystemExit("error: --calls must be at least 1")
    # as one of the engine's lanes runs it: one thread per lane where there are several CPUs
    threads = 1 if cpu_count() > 1 else cpu_count()
    batch = ONNX_LANE_SUB_BATCH if cpu_count() > 1 else ONNX_SUB_BATCH
    try:
        path = onnx_engine_for_folder(resolve_model(args.model), "fp32").path
    except DetectorError as exc:
        raise SystemExit(f"error: {exc}") from None
    times, conv_nodes, rate = profile(path, threads, batch, args.calls)
    convs = conv_flops(path, batch)
    if len(convs) != len(conv_nodes):
        raise SystemExit(f"error: {len(convs)} convolutions, {len(conv_nodes)} after optimising")
    kinds: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for node, (kind, flops, _) in zip(conv_nodes, convs, strict=True):
        kinds[kind][0] += times[node]
        kinds[kind][1] += flops
    kinds["everything else"][0] = sum(times.values()) - sum(t for t, _ in kinds.values())
    call = sum(times.values())
    all_flops = sum(f for _, f in kinds.values())
    print(f"{path.name}: {threads} threads, {batch} images per call, {rate:.1f} images/s with the "
          f"profiler on; kernel time {call * 1e3:.2f} ms per call")  # fmt: skip
    print(f"{'operator':16s} {'time':>6s} {'FLOPs':>6s} {'GFLOP/s':>8s}")
    for kind, (seconds, flops) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
        speed = f"{flops / seconds / 1e9:8.1f}" if flops else f"{'':8s}"
        print(f"{kind:16s} {seconds / call:6.1%} {flops / all_flops:6.1%} {speed}")
    print("\nconvolution      output (N, C, H, W)       ms/call  GFLOP/s")
    for node, (kind, flops, out) in zip(conv_nodes, convs, strict=True):
        shape = "x".join(map(str, out))
        print(f"{kind:16s} {shape:24s} {times[node] * 1e3:8.3f} {flops / times[node] / 1e9:8.1f}")
    gemm, source = gemm_rate(threads, 2.0)
    limit = gemm / (all_flops / batch)
    seconds, flops = kinds["1x1"]
    best = max(f / times[n] for n, (k, f, _) in zip(conv_nodes, convs, strict=True) if k == "1x1")
    rest = call - seconds
    print(f"\nfp32 GEMM rate {gemm / 1e9:.1f} GFLOP/s ({source}): limit {limit:.1f} images/s")
    for label, speed in (("the GEMM rate", gemm), ("the best 1x1 rate here", best)):
        ceiling = batch / (rest + flops / speed)
        print(f"every 1x1 convolution at {label} ({speed / 1e9:.0f} GFLOP/s), the rest as "
              f"measured: {ceiling:.1f} images/s = {ceiling / limit:.2f} of the limit")  # fmt: skip


if __name__ == "__main__":
    main()
