"""Export a model folder to ONNX (fp32, or int8 calibrated on real images), checked against
PyTorch before the file is written.

The exported graph takes preprocessed images (N, 3, H, W) and returns logits; the metadata
carries the model config (preprocessing, threshold, temperature), the precision, the weights'
sha256 and the check's figures, so the file alone is enough to score with. Needs torch, onnx
and onnxscript (the `torch` extra); scoring with the result needs neither.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from deepfake_detect.errors import DetectorError, ModelError
from deepfake_detect.inference.onnx_files import PRECISIONS, onnx_metadata, weights_hash

log = logging.getLogger("deepfake_detect")

FP32_TOLERANCE = 1e-4
"""Largest difference in P(fake) between ONNX Runtime and PyTorch that an fp32 export may show."""
CALIBRATION_IMAGES = 256
CHECK_IMAGES = {"fp32": 64, "int8": 512}
OPSET = 20


class ExportCheckError(DetectorError):
    """ONNX Runtime and PyTorch disagree by more than the tolerance: nothing was written."""


@dataclass(frozen=True)
class ExportReport:
    path: str
    precision: str
    check_images: int
    check_kind: str  # "real images" or "synthetic images"
    max_abs_diff: float  # in P(fake), after the temperature
    flipped: float  # share of check images whose label changed
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)


def export_onnx(
    model_dir: str | os.PathLike,
    output: str | os.PathLike,
    *,
    precision: str = "fp32",
    images: Sequence[str | os.PathLike] | None = None,
    check_images: Sequence[str | os.PathLike] | None = None,
    calibration: str = "MinMax",
) -> ExportReport:
    """Export, check against PyTorch on `images` (real photos; synthetic ones when None), and
    write `output` atomically. fp32 must agree within FP32_TOLERANCE, else ExportCheckError and
    nothing is written; int8 differs by design: its agreement (largest difference, share of
    labels changed) is reported and recorded in the file's metadata.

    int8 needs `images`: they calibrate the quantisation (use training images, never test ones).
    `check_images` (default: `images`) are the ones the export is checked on. `calibration`:
    how int8 sets each activation's range (`quantize_int8`'s method).
    """
    from deepfake_detect.models.checkpoint import load_model_weights
    from deepfake_detect.models.config import read_config
    from deepfake_detect.models.loading import model_from_config

    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be fp32 or int8, not {precision!r}")
    if precision == "int8" and not images:
        raise ValueError("int8 export needs --images: real photos to calibrate the quantisation")
    model_dir, output = Path(model_dir), Path(output)
    config = read_config(model_dir)
    net = model_from_config(config, load_model_weights(model_dir, config)).eval()
    check, kind = check_batch(config, check_images or images, CHECK_IMAGES[precision])
    with tempfile.TemporaryDirectory(prefix="deepfake-detect-export-") as tmp:
        fp32 = Path(tmp) / "model.onnx"
        trace_to_onnx(net, config.image_size, fp32)
        path = fp32
        if precision == "int8":
            path = Path(tmp) / "model.int8.onnx"
            quantize_int8(fp32, path, calibration_batch(config, images), method=calibration)
        report = compare(net, path, check, config.temperature, config.threshold, precision)
        report = ExportReport(str(output), precision, len(check), kind, *report)
        if not report.passed:
            raise ExportCheckError(failure_message(report))
        metadata = onnx_metadata(config, precision, weights_hash(model_dir), report.to_dict())
        write_with_metadata(path, output, metadata)
    return report


def trace_to_onnx(net, image_size: int, path: Path) -> None:
    """The network as one self-contained ONNX file with a dynamic batch axis."""
    import torch

    for name in ("onnxscript", "onnx_ir", "torch.onnx"):  # their INFO lines are not for users
        logging.getLogger(name).setLevel(logging.WARNING)
    example = torch.zeros(2, 3, image_size, image_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    # the dynamo exporter prints its progress to stdout: keep the CLI's output clean
    with contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(
            net, (example,), dynamo=True, opset_version=OPSET, input_names=["image"],
            output_names=["logit"], dynamic_shapes=({0: batch},), verbose=False,
        )  # fmt: skip
        program.save(str(path), external_data=False)


def quantize_int8(
    fp32: Path,
    output: Path,
    batch: np.ndarray,
    *,
    keep_fp32: Sequence[str] = (),
    ranges: Path | None = None,
    method: str = "MinMax",
) -> None:
    """Static int8 quantisation (QDQ, weights per channel), activations calibrated on `batch`.

    The dense head stays fp32, and so do the nodes named in `keep_fp32` (names of the graph
    after ONNX Runtime's pre-processing). `ranges`: a JSON file of the calibrated activation
    ranges, written on first use and read after, so that variants share the very same ranges.
    `method`: ONNX Runtime's `CalibrationMethod` by name (`MinMax`, `Percentile`, `Entropy`).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = fp32.with_name("prepared.onnx")
    quant_pre_process(str(fp32), str(prepared))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.all = [batch[i : i + 16] for i in range(0, len(batch), 16)]
            self.batches = iter(self.all)

        def __len__(self) -> int:
            return len(self.all)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.batches = iter(self.all[start_index:end_index])

        def get_next(self):
            chunk = next(self.batches, None)
            return None if chunk is None else {"image": chunk}

    quantize_static(
        str(prepared), str(output), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod[method],
        nodes_to_exclude=[*head_nodes(prepared), *keep_fp32],
        calibration_cache_path=None if ranges is None else str(ranges),
        # histograms are merged a batch at a time rather than from every activation kept
        # (all of them for 256 images outgrow 24 GiB)
        extra_options={} if method == "MinMax" else {"CalibStridedMinMax": 1},
    )  # fmt: skip


def head_nodes(path: Path) -> list[str]:
    """The dense head (Gemm nodes) stays in fp32: it is tiny and sets the score's last digits."""
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type in ("Gemm", "MatMul")]


def compare(net, path: Path, batch: np.ndarray, temperature: float, threshold: float, precision):
    """(max |dP|, share of labels flipped, passed) between PyTorch and ONNX Runtime."""
    import torch

    from deepfake_detect.inference.engines import OnnxEngine

    with torch.inference_mode():
        reference = net(torch.from_numpy(batch)).double().numpy().reshape(-1)
    exported = OnnxEngine(path).logits(batch)
    p_ref = 1.0 / (1.0 + np.exp(-reference / temperature))
    p_onnx = 1.0 / (1.0 + np.exp(-exported / temperature))
    diff = float(np.max(np.abs(p_ref - p_onnx)))
    flipped = float(np.mean((p_ref >= threshold) != (p_onnx >= threshold)))
    return diff, flipped, precision != "fp32" or diff <= FP32_TOLERANCE


def failure_message(report: ExportReport) -> str:
    return (
        f"ONNX Runtime and PyTorch differ by {report.max_abs_diff:.2e} in P(fake) on "
        f"{report.check_images} {report.check_kind} (tolerance {FP32_TOLERANCE:g}): "
        "nothing written"
    )


def write_with_metadata(source: Path, output: Path, metadata: dict[str, str]) -> None:
    import onnx

    from deepfake_detect.files import atomic_write_bytes

    model = onnx.load(str(source))
    strip_node_metadata(model.graph)
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "deepfake-detect"
    atomic_write_bytes(output, model.SerializeToString())


def strip_node_metadata(graph) -> None:
    """The exporter notes each node's Python stack trace (this machine's paths): not for users."""
    for node in graph.node:
        del node.metadata_props[:]
        for attribute in node.attribute:
            if attribute.g.node:
                strip_node_metadata(attribute.g)


def image_files(images: Sequence[str | os.PathLike], limit: int) -> list[Path]:
    """Up to `limit` image files, spread evenly over the given files and folders."""
    from deepfake_detect.inference.inputs import expand_paths

    files = expand_paths(images)
    if not files:
        raise ModelError("--images names no image files")
    step = max(1, len(files) // limit)
    return files[::step][:limit]


def preprocessed(config, files: Sequence[Path]) -> np.ndarray:
    from deepfake_detect.data.images import load_image, preprocess

    arrays = []
    for path in files:
        try:
            arrays.append(
                preprocess(
                    load_image(path),
                    config.image_size,
                    config.mean,
                    config.std,
                    config.interpolation,
                )  # fmt: skip
            )
        except DetectorError as exc:
            log.warning("skipping %s", exc)
    if not arrays:
        raise ModelError("none of the --images could be read")
    return np.stack(arrays).astype(np.float32)


def calibration_batch(config, images) -> np.ndarray:
    return preprocessed(config, image_files(images, CALIBRATION_IMAGES))


def check_batch(config, images, limit: int) -> tuple[np.ndarray, str]:
    """The images the export is checked on: real ones when given, else synthetic ones."""
    if images:
        return preprocessed(config, image_files(images, limit)), "real images"
    return synthetic_batch(config), "synthetic images"


def synthetic_batch(config, n: int = 8) -> np.ndarray:
    """Smooth colour fields with noise, saved as JPEG: image-like statistics, not tensors of
    noise (on which networks saturate and an export check proves little)."""
    from PIL import Image

    from deepfake_detect.data.images import load_image, preprocess

    rng = np.random.default_rng(0)
    side = config.image_size
    out = []
    for _ in range(n):
        low = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        field = np.asarray(Image.fromarray(low).resize((side, side), Image.Resampling.BICUBIC))
        noisy = np.clip(field + rng.normal(0, 12, field.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, "JPEG", quality=85)
        image = load_image(buffer.getvalue(), max_pixels=side * side)  # ours: not the user's limit
        out.append(preprocess(image, side, config.mean, config.std, config.interpolation))
    return np.stack(out).astype(np.float32)
