"""The ONNX engine to score a model folder with: its shipped or cached file when it was exported
from the folder's current weights, else an fp32 export made once (`inference.export`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from deepfake_detect.errors import ModelError
from deepfake_detect.inference.engines import OnnxEngine
from deepfake_detect.inference.export import export_onnx
from deepfake_detect.inference.onnx_files import (
    DEFAULT_KEY,
    ONNX_NAMES,
    WEIGHTS_KEY,
    cache_dir,
    candidate_paths,
    check_precision_name,
    weights_hash,
)

log = logging.getLogger("deepfake_detect")


def fresh_engine(
    model_dir: Path, precision: str, weights_sha256: str, **options
) -> OnnxEngine | None:
    """The folder's ONNX file at this precision, loaded with `OnnxEngine`'s `options` (threads,
    lanes, spin), when it was exported from the current weights (the session is created once:
    its metadata tells whether the file is fresh)."""
    for path in candidate_paths(model_dir, precision, weights_sha256):
        if not path.is_file():
            continue
        try:
            engine = OnnxEngine(path, **options)
        except ModelError:  # truncated or foreign
            log.info("%s: unreadable; ignoring it", path)
            continue
        if engine.metadata.get(WEIGHTS_KEY) == weights_sha256:
            return engine
        log.info("%s: exported from other weights; ignoring it", path)
    return None


class NeedsTorch(ModelError):
    """Exporting needs PyTorch, which is not installed."""


def onnx_engine_for_folder(model_dir: Path, precision: str = "auto", **options) -> OnnxEngine:
    """The ONNX engine to score a model folder with, exporting the fp32 file once when missing;
    `options` (threads, lanes, spin) go to `OnnxEngine`.

    precision auto: the folder's int8 file when it records that it met the clause for a
    default precision (`DEFAULT_KEY`: the bundled model's, trained for int8), else fp32; when
    fp32 would need an export and torch is not installed, the folder's int8 file, with a
    warning.
    """
    check_precision_name(precision)
    weights_sha256 = weights_hash(model_dir)
    if precision == "int8":
        int8 = fresh_engine(model_dir, "int8", weights_sha256, **options)
        if int8 is None:
            raise ModelError(
                f"{model_dir}: no int8 ONNX file for these weights; make one with "
                f"`deepfake-detect export --model {model_dir} --precision int8 --images DIR "
                f"--output {model_dir / ONNX_NAMES['int8']}`"
            )
        return int8
    int8 = None
    if precision == "auto":
        int8 = fresh_engine(model_dir, "int8", weights_sha256, **options)
        if int8 is not None and DEFAULT_KEY in int8.metadata:
            return int8
    found = fresh_engine(model_dir, "fp32", weights_sha256, **options)
    if found is not None:
        return found
    try:
        return OnnxEngine(export_once(model_dir, weights_sha256), **options)
    except NeedsTorch:
        if int8 is None:
            raise
        log.warning(
            "PyTorch is not installed, so %s cannot be exported in fp32: scoring with its int8 "
            "file (install deepfake-detect[torch] for fp32)",
            model_dir,
        )
        return int8


def export_once(model_dir: Path, weights_sha256: str) -> Path:
    """Export the folder's fp32 ONNX file beside its weights (or into the cache)."""
    try:
        import torch  # noqa: F401  (exporting needs it: say so before anything else)
    except ImportError as exc:
        raise NeedsTorch(
            f"{model_dir}: has no fp32 ONNX file yet, and exporting one needs PyTorch "
            f"({exc.name} is not installed): pip install 'deepfake-detect[torch]', "
            "or score with a .onnx file"
        ) from None
    for path in candidate_paths(model_dir, "fp32", weights_sha256):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            writable = os.access(path.parent, os.W_OK)
        except OSError:
            writable = False
        if writable:
            log.info("exporting %s to ONNX once: %s", model_dir, path)
            export_onnx(model_dir, path, precision="fp32")
            return path
    raise ModelError(f"{model_dir}: cannot write its ONNX export beside it or in {cache_dir()}")
