"""Export the MTCNN face detector's three networks to ONNX, for the package to ship.

    pip install --no-deps facenet-pytorch==2.6.0    # its weights; it pins an old torch
    python scripts/export_mtcnn_onnx.py

The weights are those of facenet-pytorch (MIT licence, Tim Esler), converted from the MTCNN
of Zhang et al. (2016) by David Sandberg's facenet (MIT). The package scores faces with ONNX
Runtime (`inference/faces.py`), so finding faces needs neither torch nor facenet-pytorch. Each
file is checked against PyTorch on random input before it is written.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

OUT = Path(__file__).parent.parent / "src" / "deepfake_detect" / "inference" / "face_models"


def export(net: torch.nn.Module, name: str, shape: tuple[int, ...], outputs: list[str],
           dynamic: dict, folder: Path) -> Path:  # fmt: skip
    net.eval()
    example = torch.rand(*shape) * 2 - 1
    path = folder / f"mtcnn-{name}.onnx"
    torch.onnx.export(net, (example,), path, input_names=["image"], output_names=outputs,
                      dynamic_axes=dynamic, opset_version=17, dynamo=False)  # fmt: skip
    check = torch.rand(*shape) * 2 - 1
    with torch.no_grad():
        expected = [t.numpy() for t in net(check)]
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"image": check.numpy()}
    )
    worst = max(float(np.abs(e - g).max()) for e, g in zip(expected, got, strict=True))
    if worst > 1e-4:
        raise SystemExit(f"{path.name}: ONNX Runtime differs from PyTorch by {worst:.2e}")
    print(f"{path.name}: {path.stat().st_size / 1e3:.0f} kB, max difference {worst:.1e}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    batch = {0: "batch"}
    export(PNet(), "pnet", (1, 3, 120, 90), ["regression", "probability"],
           {"image": {0: "batch", 2: "height", 3: "width"}}, args.output)  # fmt: skip
    export(RNet(), "rnet", (4, 3, 24, 24), ["regression", "probability"],
           {"image": batch, "regression": batch, "probability": batch}, args.output)  # fmt: skip
    export(ONet(), "onet", (4, 3, 48, 48), ["regression", "landmarks", "probability"],
           {"image": batch, "regression": batch, "landmarks": batch, "probability": batch},
           args.output)  # fmt: skip
    import facenet_pytorch

    site = Path(facenet_pytorch.__file__).parent.parent
    licence = next(site.glob("facenet_pytorch-*.dist-info")) / "LICENSE.md"
    shutil.copy(licence, args.output / "LICENSE-facenet-pytorch.md")


if __name__ == "__main__":
    main()
