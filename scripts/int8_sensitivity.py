"""Which layers make int8 change labels? Keep one convolution at a time in fp32 and measure.

The bundled model's int8 file changes 1.2-1.7% of labels against fp32, more than the 1% a
default precision may (docs/experiments.md, "int8 ONNX"). If a few layers caused most of the
error, keeping them in fp32 (mixed precision) would fix it at little cost in speed. This script
quantises the fp32 network as `deepfake-detect export --precision int8` does (QDQ, weights per
channel, min-max ranges from the same 256 training images, the dense head in fp32), once with
every convolution in int8 and once per convolution with that one left in fp32, and reports on
validation images the logit error against fp32 (root mean square, and its mean: a bias a
threshold could absorb) and the share of labels changed at the model's threshold.

    python scripts/int8_sensitivity.py --data ../shared/data [--images 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from export_bundled_onnx import calibration_images, manifest_split  # noqa: E402

from deepfake_detect.inference import load_detector  # noqa: E402
from deepfake_detect.inference.engines import OnnxEngine  # noqa: E402
from deepfake_detect.inference.export import preprocessed, quantize_int8  # noqa: E402


def measure(path: Path, batch: np.ndarray, reference: np.ndarray, temperature: float,
            threshold: float) -> dict:  # fmt: skip
    logits = OnnxEngine(path).logits(batch)
    error = logits - reference
    labels = [1.0 / (1.0 + np.exp(-x / temperature)) >= threshold for x in (logits, reference)]
    return {
        "logit_rms_error": float(np.sqrt(np.mean(error**2))),
        "logit_mean_error": float(np.mean(error)),
        "labels_changed": float(np.mean(labels[0] != labels[1])),
    }


def main() -> None:
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--images", type=int, default=300, help="validation images scored")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    detector = load_detector(engine="onnx")  # exports the fp32 file once if it is not there
    config, fp32 = detector.config, Path(detector.engine.path)
    valid = [p for p, _ in manifest_split(args.data, "valid")]
    valid = sorted(random.Random(0).sample(valid, min(args.images, len(valid))))
    batch = preprocessed(config, valid)
    calibration = preprocessed(config, calibration_images(args.data))
    reference = OnnxEngine(fp32).logits(batch)
    with tempfile.TemporaryDirectory() as tmp:
        # quantize_int8 pre-processes the graph beside its input: a copy, not the model folder
        model, listed, ranges, output = (
            Path(tmp) / n for n in ("fp32.onnx", "listed.onnx", "ranges.json", "q.onnx")
        )
        shutil.copyfile(fp32, model)
        quant_pre_process(str(model), str(listed))  # the names quantize_int8's graph has
        convs = [n.name for n in onnx.load(str(listed)).graph.node if n.op_type == "Conv"]
        rows = []
        for kept in [None, *convs]:
            quantize_int8(model, output, calibration, keep_fp32=[kept] if kept else [],
                          ranges=ranges)  # fmt: skip
            row = {"fp32_layer": kept or "(none: every convolution int8)",
                   **measure(output, batch, reference, config.temperature, config.threshold)}
            rows.append(row)
            print(f"{row['fp32_layer']:<60} rms {row['logit_rms_error']:.3f} "
                  f"mean {row['logit_mean_error']:+.3f} "
                  f"changed {row['labels_changed']:.2%}", flush=True)  # fmt: skip
    result = {"images": len(valid), "convolutions": len(convs), "variants": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
