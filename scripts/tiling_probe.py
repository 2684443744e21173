"""Would scoring the high-resolution layers strip by strip make the fp32 network faster?

On two CPUs the engine's lanes run one image per thread, and the profile
(`scripts/onnx_profile.py`) found the 1x1 convolutions at 128 and 64 px slowest: their
activations (up to 96 x 128 x 128 floats, 6 MB) overflow a core's L2. Splitting those layers
into horizontal strips, each with a halo of rows recomputed for the 3x3 convolutions' reach,
shrinks the working set at the cost of the halo's extra work. This script cuts the fp32
network of a model at the end of its last stage at a quarter of the input's size, then times
on one thread, one image at a time (as a lane runs): the whole network; that high-resolution
part alone; the part in 2, 4 and 8 strips with the halo; and the network run as the two cut
parts one after the other (what a strip-wise engine would run besides the strips). Each
figure is the best of several rounds taken in turn.

    python scripts/tiling_probe.py [--model DIR] [--halo 12] [--rounds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def cut_name(model) -> str:
    """The output of the last node whose activations are a quarter of the input's height."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model)
    height = inferred.graph.input[0].type.tensor_type.shape.dim[2].dim_value
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in inferred.graph.value_info}  # fmt: skip
    last = None
    for node in inferred.graph.node:
        shape = shapes.get(node.output[0], [])
        if len(shape) == 4 and shape[2] == height // 4:
            last = node.output[0]
        elif len(shape) == 4 and 0 < shape[2] < height // 4:
            break
    if last is None:
        raise SystemExit("error: the network has no stage at a quarter of its input's size")
    return last


def session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def best_ms(run, rounds: int, calls: int = 50) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        best = min(best, (time.perf_counter() - start) / calls * 1e3)
    return best


def main() -> None:
    import onnx
    from onnx.utils import extract_model

    from deepfake_detect.errors import DetectorError
    from deepfake_detect.inference.detector import resolve_model
    from deepfake_detect.inference.onnx_cache import onnx_engine_for_folder

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="a run folder (default: the bundled model)")
    parser.add_argument("--halo", type=int, default=12, help="rows recomputed on each side")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each figure")
    args = parser.parse_args()
    if args.halo < 0 or args.rounds < 1:
        raise SystemExit("error: --halo must be at least 0 and --rounds at least 1")
    try:
        path = onnx_engine_for_folder(resolve_model(args.model), "fp32").path
    except DetectorError as exc:
        raise SystemExit(f"error: {exc}") from None
    model = onnx.load(str(path))
    cut, image = cut_name(model), model.graph.input[0].name
    size = model.graph.input[0].type.tensor_type.shape.dim[2].dim_value
    with tempfile.TemporaryDirectory() as tmp:
        first, second = Path(tmp, "first.onnx"), Path(tmp, "second.onnx")
        extract_model(str(path), str(first), [image], [cut])
        extract_model(str(path), str(second), [cut], [o.name for o in model.graph.output])
        part = onnx.load(str(first))  # any height: strips are shorter than the image
        part.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
        part.graph.output[0].type.tensor_type.shape.dim[2].dim_param = "rows"
        del part.graph.value_info[:]
        onnx.save(part, str(first))
        whole, high, low = session(path), session(first), session(second)
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    middle = high.run(None, {image: x})[0]

    def in_strips(count: int) -> list[np.ndarray]:
        rows = size // count
        return [np.ascontiguousarray(x[:, :, max(0, i * rows - args.halo):
                                           min(size, (i + 1) * rows + args.halo)])
                for i in range(count)]  # fmt: skip

    runs = {
        "whole network": lambda: whole.run(None, {image: x}),
        "the two parts in turn": lambda: low.run(None, {cut: high.run(None, {image: x})[0]}),
        f"part to {cut} ({size // 4} px)": lambda: high.run(None, {image: x}),
        "the rest": lambda: low.run(None, {cut: middle}),
    }
    for count in (2, 4, 8):
        strips = in_strips(count)
        runs[f"part in {count} strips"] = lambda s=strips: [high.run(None, {image: t}) for t in s]
    for run in runs.values():
        run()  # warm each session's arena before timing
    best = {name: float("inf") for name in runs}
    for _ in range(args.rounds):  # each figure's rounds taken in turn with the others'
        for name, run in runs.items():
            best[name] = min(best[name], best_ms(run, 1))
    print(f"{path.name}: one thread, one image; halo {args.halo} rows; best of {args.rounds}")
    for name, ms in best.items():
        print(f"{name:32s} {ms:6.2f} ms")


if __name__ == "__main__":
    main()
