"""Compare backbones under one protocol: each trained on the same data, split, seed and options
in its own run folder, evaluated on the same images and its costs measured; then one table and
one chart (`evaluation.comparison`).

Two protocols. In-distribution: every run is tested on the `eval_split` of the data (test, the
research protocol; valid while choosing). Leave-one-source-out (`leave_out`): for each source S,
every backbone trains on all the other sources (without any near-duplicate of an image of S,
`data.prepare.drop_sources`) and is tested on every image of S, the field's test of
generalisation to an unseen generator or camera.

Rerunning the same comparison skips what is done: a finished run is not trained again (its
options must still be the command's), an unfinished one resumes, an evaluation or a speed
measurement that exists is reused. The table and chart are rewritten from the runs' files.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from deepfake_detect.data.datasets import ImageRecord, index_dataset
from deepfake_detect.data.prepare import drop_sources, evaluation_records
from deepfake_detect.devices import resolve_device
from deepfake_detect.errors import DataError
from deepfake_detect.evaluation.comparison import (
    Evaluated,
    comparison_rows,
    read_scores,
    write_comparison,
)
from deepfake_detect.evaluation.runs import SCORES_FILE, evaluate
from deepfake_detect.files import atomic_write_json, check_output_path
from deepfake_detect.inference.benchmark import image_batch, model_flops, throughput
from deepfake_detect.inference.detector import load_detector
from deepfake_detect.inference.engines import cpu_count
from deepfake_detect.models.networks import build_model
from deepfake_detect.training.options import OPTIONS_NAME, TrainOptions, check_same_options
from deepfake_detect.training.run_state import read_state
from deepfake_detect.training.trainer import train

log = logging.getLogger("deepfake_detect")

SPEED_NAME = "speed.json"
SPEED_BATCH = 16
EVAL_SPLITS = ("valid", "test")


@dataclass
class CompareOptions:
    """A comparison: the training options every run shares (all but its backbone, run folder,
    left-out source and resuming, which the comparison sets), the backbones and the protocol."""

    training: TrainOptions  # its output is the comparison's folder
    backbones: list[str]
    leave_out: list[str] = field(default_factory=list)
    eval_split: str = "test"
    jpeg_quality: int | None = None  # re-encode the test images first (both classes)
    speed_seconds: float = 2.0  # CPU images/s: best of benchmark.ROUNDS windows of 1/5 of it
    n_bootstrap: int = 1000

    def __post_init__(self) -> None:
        q = self.jpeg_quality
        checks = [
            (bool(self.backbones), "--backbones: give at least one backbone name"),
            (len(set(self.backbones)) == len(self.backbones), "--backbones: a name is given twice"),
            (len(set(self.leave_out)) == len(self.leave_out), "--leave-out: a source given twice"),
            (self.eval_split in EVAL_SPLITS,
             f"--eval-split must be valid or test, not {self.eval_split!r}"),
            (q is None or 1 <= q <= 100, "--jpeg-quality must be within 1-100"),
            (self.speed_seconds >= 0, "the speed measurement's seconds must be >= 0"),
            (self.n_bootstrap >= 1, "the bootstrap needs at least one resample"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def output(self) -> Path:
        return self.training.output


@dataclass(frozen=True)
class Run:
    backbone: str
    left_out: str | None = None  # the source it never sees, and is tested on


@dataclass
class ComparisonResult:
    rows: list[dict]
    files: list[Path]  # comparison.md, comparison.csv, comparison.png


def compare(options: CompareOptions) -> ComparisonResult:
    """Train, evaluate and measure every run not done yet, then write the table and chart."""
    check_comparison(options)
    runs = [Run(b, s) for s in options.leave_out or [None] for b in options.backbones]
    evaluated = []
    for number, run in enumerate(runs, 1):
        log.info("run %d of %d: %s", number, len(runs), run_folder(options, run))
        evaluated.append(complete_run(options, run))
    rows = comparison_rows(evaluated, options.n_bootstrap, seed=options.training.seed)
    return ComparisonResult(rows, write_comparison(rows, options.output, caption(options)))


def check_comparison(options: CompareOptions) -> None:
    """Refuse, before the first run trains, what would stop a later one: a backbone that cannot
    be built, a source to leave out that the data lacks or that is all the data holds."""
    check_output_path(options.output, folder=True)
    for backbone in options.backbones:
        parameter_count(replace(options.training, backbone=backbone))
    if options.leave_out:
        records = index_dataset(options.training.data)
        for source in options.leave_out:
            if not drop_sources(records, [source]):
                raise DataError(f"--leave-out {source}: no other source left to train on")


def parameter_count(options: TrainOptions) -> int:
    """The network's parameters, counted on the meta device (no memory, no weights read); it
    raises a one-line ModelError for a backbone, head or stem that cannot be built."""
    with torch.device("meta"):
        net = build_model(
            options.backbone, options.head, stem_stride=options.stem_stride,
            drop_path=options.drop_path,
        )  # fmt: skip
    return sum(p.numel() for p in net.parameters())


def run_folder(options: CompareOptions, run: Run) -> Path:
    runs = options.output / "runs"
    return runs / (f"without-{run.left_out}" if run.left_out else "") / run.backbone


def run_options(options: CompareOptions, run: Run) -> TrainOptions:
    folder = run_folder(options, run)
    return replace(
        options.training, backbone=run.backbone, output=folder,
        exclude_sources=[run.left_out] if run.left_out else [],
        resume=(folder / OPTIONS_NAME).is_file(),
    )  # fmt: skip


def complete_run(options: CompareOptions, run: Run) -> Evaluated:
    """The run as its row needs it, after doing what of it is missing: its training, its
    evaluation, its speed measurement."""
    training = run_options(options, run)
    train_run(training)
    folder = evaluate_run(options, run, training.output)
    scores = read_scores(folder / SCORES_FILE)
    costs = measure_costs(training, options.speed_seconds, list(scores)[:SPEED_BATCH])
    costs["training_seconds"] = sum(t["seconds"] for t in read_state(training.output).timings)
    metrics = json.loads((folder / "metrics.json").read_text())
    return Evaluated(run.backbone, tested_on(options, run), metrics, scores, costs)


def train_run(options: TrainOptions) -> None:
    """Train, resume, or leave a finished run as it is (if trained with these options)."""
    state = read_state(options.output)
    if state is not None and state.done:
        check_same_options(options.output / OPTIONS_NAME, options)
        log.info("%s: trained already", options.output)
        return
    train(options)


def tested_on(options: CompareOptions, run: Run) -> str:
    return f"{run.left_out} (left out)" if run.left_out else options.eval_split


def evaluate_run(options: CompareOptions, run: Run, run_dir: Path) -> Path:
    """The run's evaluation folder (metrics.json, scores.csv, report.html), made once: on its
    left-out source, or on the split of the data. PyTorch scores on a GPU, ONNX Runtime on the
    CPU (as `evaluate` does by default)."""
    quality = f"-q{options.jpeg_quality}" if options.jpeg_quality else ""
    folder = run_dir / f"eval-{run.left_out or options.eval_split}{quality}"
    if (folder / SCORES_FILE).is_file():
        return folder
    o = options.training
    on_gpu = resolve_device(o.device).type == "cuda"
    detector = load_detector(
        run_dir, device=o.device if on_gpu else "cpu", engine="torch" if on_gpu else "onnx"
    )
    evaluate(
        detector, records_tested(options, run, run_dir), folder, batch_size=o.batch_size,
        jpeg_quality=options.jpeg_quality, progress=o.progress,
    )  # fmt: skip
    return folder


def records_tested(options: CompareOptions, run: Run, run_dir: Path) -> list[ImageRecord]:
    """The split the run recorded, or every image of its left-out source (which its split.csv
    does not know)."""
    data = options.training.data
    if run.left_out is None:
        return evaluation_records(data, options.eval_split, run_dir)
    return [r for r in evaluation_records(data, "all", run_dir) if r.source == run.left_out]


def measure_costs(options: TrainOptions, seconds: float, paths: list[str]) -> dict:
    """Parameters, FLOPs per image and CPU images/s of ONNX Runtime fp32 on a batch of the
    test images (benchmark's measures, shortened), once per run folder (speed.json)."""
    path = options.output / SPEED_NAME
    if path.is_file():
        return json.loads(path.read_text())
    detector = load_detector(options.output, device="cpu", engine="onnx", precision="fp32")
    batch = image_batch(detector, [Path(p) for p in paths], SPEED_BATCH)
    costs = {
        "parameters": parameter_count(options),
        "flops_per_image": model_flops(options.output),
        "cpu_images_s": throughput(detector.engine.logits, batch, seconds),
        "threads": cpu_count(),
        "batch_size": SPEED_BATCH,
    }
    atomic_write_json(path, costs)
    return costs


def caption(options: CompareOptions) -> str:
    o = options.training
    tested = (
        "every image of the source left out, each run trained on all the others"
        if options.leave_out else f"the {options.eval_split} split"
    )  # fmt: skip
    if options.jpeg_quality:
        tested += f", re-encoded as JPEG quality {options.jpeg_quality}"
    split_seed = o.seed if o.split_seed is None else o.split_seed
    return (
        f"Tested on {tested} of {', '.join(d.name for d in o.data)}; every backbone with the same "
        f"split (seed {split_seed}), seed {o.seed} and options ({o.frozen_epochs} frozen + "
        f"{o.finetune_epochs} fine-tuning epochs, batch {o.batch_size}, augment {o.augment}"
        f"{f', train size {o.train_size}' if o.train_size else ''}). Intervals: 95% bootstrap; "
        f"ROC-AUC - first: paired bootstrap difference to {options.backbones[0]} on the same "
        f"images; CPU images/s: ONNX Runtime fp32 at {cpu_count()} threads, batch {SPEED_BATCH}."
    )
