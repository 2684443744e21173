"""Train E's weights for int8: distillation through simulated quantisation (issue 14).

The bundled model's int8 file calibrated by min-max alone changed 1.1-1.5% of labels against
fp32 on held-out images, more than the 1% a default precision may; the error is spread over the
whole network (docs/experiments.md, "int8 ONNX"). Here E's network is fine-tuned with every
tensor that `quantize_int8` quantises rounded as it will be (weights int8 per output channel,
activations uint8 over their min-max range, straight-through gradients), to give E's own fp32
logit: no labels, training images only. The result is written back into E's architecture and
quantised by `quantize_int8` exactly as the shipped file is.

    python scripts/int8_distill.py train --data ../shared/data --lr 3e-6 --steps 400 --out DIR
    python scripts/int8_distill.py score --data ../shared/data --int8 DIR/after.int8.onnx \\
        --split valid [--json out.json]
    python scripts/int8_distill.py ship --data ../shared/data --out DIR \
        --valid valid.json --heldout heldout.json   # into the bundled folder

`train` reports, on 300 training images set apart from those it trains on (as they are and at
JPEG 75), the int8 file's logit error against E's fp32 file, beside the error of E quantised as
it is: the learning rate is chosen on them. `score` measures an int8 file against E's fp32 ONNX
on the bundled split's validation or held-out images (`int8_calibration.py`'s figures).
`ship` writes the int8 file into the bundled folder, marked as the default precision
(`DEFAULT_KEY`) only when both of `score`'s reports meet the clause: ROC-AUC within 0.002 of
fp32 and at most 1% of labels changed, as they are and at JPEG 75.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

from export_bundled_onnx import calibration_images, manifest_split, q75  # noqa: E402
from int8_calibration import compare  # noqa: E402

from deepfake_detect.data.images import load_image, preprocess  # noqa: E402
from deepfake_detect.inference import BUNDLED_DIR, load_detector  # noqa: E402
from deepfake_detect.inference.engines import OnnxEngine  # noqa: E402
from deepfake_detect.inference.export import (  # noqa: E402
    compare as compare_with_torch,
)
from deepfake_detect.inference.export import (
    preprocessed,
    quantize_int8,
    trace_to_onnx,
    write_with_metadata,
)
from deepfake_detect.inference.onnx_files import (  # noqa: E402
    DEFAULT_KEY,
    ONNX_NAMES,
    onnx_metadata,
    weights_hash,
)
from deepfake_detect.models.checkpoint import load_model_weights  # noqa: E402
from deepfake_detect.models.config import read_config  # noqa: E402
from deepfake_detect.models.loading import model_from_config  # noqa: E402

DEV_IMAGES = 300
REFRESH_EVERY = 50
NOTE_KEY = "deepfake_detect.int8_training"


def bundled_net():
    config = read_config(BUNDLED_DIR)
    return config, model_from_config(config, load_model_weights(BUNDLED_DIR, config)).eval()


# --- the network with batch norms folded and quantisation simulated ---------------------------


def conv_bn_pairs(net) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
    """(convolution, the batch norm after it) for every convolution of the backbone."""
    names = [("conv_stem", "bn1"), ("conv_head", "bn2"), ("conv_dw", "bn1"), ("conv_pw", "bn2"),
             ("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")]  # fmt: skip
    pairs = []
    for module in net.backbone.modules():
        kind = type(module).__name__
        if kind == "EfficientNet":
            chosen = names[:2]
        elif kind == "DepthwiseSeparableConv":
            chosen = names[2:4]
        elif kind == "InvertedResidual":
            chosen = names[4:]
        else:
            continue
        pairs += [(getattr(module, c), getattr(module, b)) for c, b in chosen]
    return pairs


@torch.no_grad()
def fold_batch_norms(net) -> None:
    """Each batch norm into its convolution; the norm left as identity plus the folded bias,
    so that the weights still load into the architecture (ONNX Runtime folds it away again)."""
    pairs = conv_bn_pairs(net)
    assert len(pairs) == sum(isinstance(m, torch.nn.Conv2d) for m in net.backbone.modules())
    for conv, bn in pairs:
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        bn.bias.copy_(bn.bias - bn.running_mean * scale)
        bn.weight.fill_(1.0)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
        bn.weight.requires_grad_(False)


class Rounding:
    """uint8 rounding of chosen tensors over their min-max ranges; `observe` records ranges."""

    def __init__(self) -> None:
        self.ranges: dict[str, tuple[float, float]] = {}
        self.mode = "off"  # "observe", "round" or "off"

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "observe":
            low, high = float(x.min()), float(x.max())
            old = self.ranges.get(name, (low, high))
            self.ranges[name] = (min(low, old[0]), max(high, old[1]))
            return x
        if self.mode == "off":
            return x
        low, high = self.ranges[name]
        low, high = min(low, 0.0), max(high, 0.0)
        scale = max(high - low, 1e-8) / 255.0
        zero = int(round(-low / scale))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


class WeightRounding(torch.nn.Module):
    """int8, symmetric, one scale per output channel, as `quantize_int8` rounds weights."""

    def __init__(self, rounding: Rounding) -> None:
        super().__init__()
        self.rounding = rounding

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.rounding.mode != "round":  # ranges are found on the fp32 network
            return w
        scale = w.detach().abs().amax(dim=(1, 2, 3)).clamp_min(1e-12) / 127.0
        zero = torch.zeros(len(scale), dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


def simulate_int8(net) -> Rounding:
    """Round weights and activations of `net`'s backbone where ONNX Runtime's int8 graph does."""
    from torch.nn.utils import parametrize

    rounding = Rounding()
    backbone = net.backbone
    for conv, bn in conv_bn_pairs(net):
        parametrize.register_parametrization(conv, "weight", WeightRounding(rounding))
        name = f"act{id(bn)}"
        bn.register_forward_hook(lambda _m, _i, out, name=name: rounding(name, out))
    backbone.conv_stem.register_forward_pre_hook(lambda _m, args: (rounding("image", args[0]),))
    for block in backbone.modules():
        if type(block).__name__ == "InvertedResidual" and block.has_skip:
            name = f"sum{id(block)}"
            block.register_forward_hook(lambda _m, _i, out, name=name: rounding(name, out))
    backbone.global_pool.register_forward_hook(lambda _m, _i, out: rounding("pooled", out))
    return rounding


@torch.no_grad()
def observe_ranges(net, rounding: Rounding, batch: torch.Tensor) -> None:
    """The fp32 network's ranges on the calibration images, as ONNX Runtime's min-max finds them."""
    rounding.ranges.clear()
    rounding.mode = "observe"
    for chunk in batch.split(32):
        net(chunk)
    rounding.mode = "round"


def plain_state(net) -> dict[str, torch.Tensor]:
    """The weights without the rounding: what `quantize_int8` is given."""
    out = {}
    for name, value in net.state_dict().items():
        if ".parametrizations.weight.original" in name:
            name = name.replace(".parametrizations.weight.original", ".weight")
        out[name] = value.detach().clone()
    return out


# --- images ----------------------------------------------------------------------------------


def augmented(config, path: Path, rng: random.Random) -> np.ndarray:
    image = load_image(path)
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=rng.randint(30, 95))
        image = load_image(buffer.getvalue())
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return preprocess(image, config.image_size, config.mean, config.std, config.interpolation)


def q75_batch(config, paths: list[Path]) -> np.ndarray:
    return np.stack([
        preprocess(load_image(q75(p)), config.image_size, config.mean, config.std,
                   config.interpolation) for p in paths
    ]).astype(np.float32)  # fmt: skip


def export_int8(net_state: dict, calibration: np.ndarray, output: Path) -> None:
    """E's architecture with `net_state`, quantised as the shipped int8 file is."""
    config, net = bundled_net()
    fold_batch_norms(net)
    net.load_state_dict(net_state)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "model.onnx"
        trace_to_onnx(net, config.image_size, fp32)
        quantize_int8(fp32, output, calibration)


# --- commands --------------------------------------------------------------------------------


def train(args) -> None:
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    config, teacher = bundled_net()
    _, student = bundled_net()
    fold_batch_norms(student)
    calibration_files = calibration_images(args.data)
    calibration = preprocessed(config, calibration_files)
    pool = sorted(set(p for p, _ in manifest_split(args.data, "train")) - set(calibration_files))
    random.Random(0).shuffle(pool)
    dev, pool = pool[:DEV_IMAGES], pool[DEV_IMAGES:]
    dev_inputs = {"as-is": preprocessed(config, dev), "jpeg-q75": q75_batch(config, dev)}
    fp32_onnx = Path(load_detector(engine="onnx").engine.path)
    reference = {k: OnnxEngine(fp32_onnx).logits(v) for k, v in dev_inputs.items()}
    args.out.mkdir(parents=True, exist_ok=True)

    def dev_error(tag: str, state: dict) -> dict:
        path = args.out / f"{tag}.int8.onnx"
        export_int8(state, calibration, path)
        engine = OnnxEngine(path)
        row = {}
        for name, batch in dev_inputs.items():
            logits = engine.logits(batch)
            p, p_ref = (1 / (1 + np.exp(-x.astype(np.float64) / config.temperature))
                        for x in (logits, reference[name]))  # fmt: skip
            row[name] = {
                "logit_rms_error": float(np.sqrt(np.mean((logits - reference[name]) ** 2))),
                "logit_mean_error": float(np.mean(logits - reference[name])),
                "labels_changed": float(np.mean((p >= config.threshold)
                                                != (p_ref >= config.threshold))),
            }  # fmt: skip
        print(tag, json.dumps(row), flush=True)
        return row

    report = {"lr": args.lr, "steps": args.steps, "seed": args.seed, "dev_images": len(dev)}
    report["before"] = dev_error("before", {k: v.clone() for k, v in student.state_dict().items()})
    rounding = simulate_int8(student)
    params = [p for p in student.backbone.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, args.steps)
    calibration_t = torch.from_numpy(calibration)
    order: list[Path] = []
    start = time.time()
    for step in range(args.steps):
        if step % REFRESH_EVERY == 0:
            observe_ranges(student, rounding, calibration_t)
        if len(order) < args.batch_size:
            order += rng.sample(pool, len(pool))
        files, order = order[: args.batch_size], order[args.batch_size :]
        x = torch.from_numpy(np.stack([augmented(config, f, rng) for f in files]))
        with torch.no_grad():
            target = teacher(x)
        loss = torch.mean((student(x) - target) ** 2)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} {time.time() - start:.0f}s", flush=True)
    state = plain_state(student)
    torch.save(state, args.out / "distilled.pt")
    report["after"] = dev_error("after", state)
    report["seconds"] = time.time() - start
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")


def score(args) -> None:
    config = read_config(BUNDLED_DIR)
    fp32 = Path(load_detector(engine="onnx").engine.path)
    images = manifest_split(args.data, args.split)
    labels = np.array([label for _, label in images])
    paths = [p for p, _ in images]
    result = {"split": args.split, "images": len(images), "threshold": config.threshold}
    for name, batch in (("as-is", preprocessed(config, paths)),
                        ("jpeg-q75", q75_batch(config, paths))):  # fmt: skip
        reference = OnnxEngine(fp32).logits(batch)
        logits = OnnxEngine(args.int8).logits(batch)
        result[name] = compare(logits, reference, labels, config.temperature, config.threshold)
        print(name, json.dumps(result[name]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def meets_clause(report: dict) -> bool:
    """The issue's clause for a default precision, on both input sets of a `score` report."""
    return all(
        abs(report[name]["roc_auc_difference"]) <= 0.002 and report[name]["labels_changed"] <= 0.01
        for name in ("as-is", "jpeg-q75")
    )


def ship(args) -> None:
    """The distilled int8 file into the bundled folder, checked against E as exports are."""
    config, net = bundled_net()
    state = torch.load(args.out / "distilled.pt")
    calibration = preprocessed(config, calibration_images(args.data))
    valid = [p for p, _ in manifest_split(args.data, "valid")]
    check = preprocessed(config, valid[:: max(1, len(valid) // 512)][:512])
    reports = {name: json.loads(path.read_text())
               for name, path in (("valid", args.valid), ("heldout", args.heldout))}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.int8.onnx"
        export_int8(state, calibration, path)
        diff, flipped, passed = compare_with_torch(
            net, path, check, config.temperature, config.threshold, "int8"
        )
        report = {"precision": "int8", "check_images": len(check), "check_kind": "real images",
                  "max_abs_diff": diff, "flipped": flipped, "passed": passed}  # fmt: skip
        metadata = onnx_metadata(config, "int8", weights_hash(BUNDLED_DIR), report)
        metadata[NOTE_KEY] = ("weights fine-tuned through simulated int8 to give the fp32 "
                              "weights' logits (scripts/int8_distill.py)")  # fmt: skip
        default = all(meets_clause(r) for r in reports.values())
        if default:
            metadata[DEFAULT_KEY] = json.dumps({
                split: {name: {k: r[name][k] for k in ("roc_auc_difference", "labels_changed")}
                        for name in ("as-is", "jpeg-q75")} | {"images": r["images"]}
                for split, r in reports.items()
            })  # fmt: skip
        write_with_metadata(path, BUNDLED_DIR / ONNX_NAMES["int8"], metadata)
    print(json.dumps(report), "default precision" if default else "not the default")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", type=Path, default=Path("../shared/data"))
    t.add_argument("--lr", type=float, required=True)
    t.add_argument("--steps", type=int, default=400)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("score")
    s.add_argument("--data", type=Path, default=Path("../shared/data"))
    s.add_argument("--int8", type=Path, required=True)
    s.add_argument("--split", choices=("valid", "test"), required=True)
    s.add_argument("--json", type=Path)
    h = sub.add_parser("ship")
    h.add_argument("--data", type=Path, default=Path("../shared/data"))
    h.add_argument("--out", type=Path, required=True)
    h.add_argument("--valid", type=Path, required=True, help="`score --split valid`'s JSON")
    h.add_argument("--heldout", type=Path, required=True, help="`score --split test`'s JSON")
    args = parser.parse_args()
    {"train": train, "score": score, "ship": ship}[args.command](args)


if __name__ == "__main__":
    main()
