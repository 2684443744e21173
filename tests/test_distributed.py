"""Training and scoring under torchrun on the CPU (gloo): two processes must give what one
gives, rank 0 alone writes, a killed run resumes, and two nodes on 127.0.0.1 work as one."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_class_folders
from safetensors.torch import load_file
from test_training import wait_for_epoch

from deepfake_detect.distributed import (
    World,
    gather_by_index,
    launched_world,
    map_across_ranks,
    rank_slices,
    shard,
)
from deepfake_detect.errors import DataError

ENTRY = Path(__file__).with_name("ddp_entry.py")
# as torchrun sets it: the same thread count in both runs, for the same arithmetic
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch without the gloo backend",
)
# Dropout (linear head), augmentation and BatchNorm updates (frozen in both phases) are off,
# so the only difference between one process and two is how the global batch is cut.
GLOBAL_BATCH = 128
COMMON = ["--backbone", "test_efficientnet", "--no-pretrained", "--image-size", "32",
          "--head", "linear", "--augment", "none", "--frozen-epochs", "2",
          "--finetune-epochs", "3", "--lr", "1e-2", "--finetune-lr", "3e-3",
          "--patience", "10", "--workers", "0", "--no-audit", "--device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def ddp_data(tmp_path_factory) -> Path:
    """A source whose training split (112 images) is a multiple of two ranks."""
    root = tmp_path_factory.mktemp("ddp-data")
    write_class_folders(root / "alpha", 80, seed=5)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args, *, nproc=2, nodes=None, env=None, wait=True):
    """`torchrun ... tests/ddp_entry.py ARGS`: one node of `nproc` processes (standalone), or
    node `nodes[0]` of `nodes[1]` meeting at 127.0.0.1:`nodes[2]`."""
    where = ["--standalone"] if nodes is None else [
        "--nnodes", str(nodes[1]), "--node-rank", str(nodes[0]),
        "--master-addr", "127.0.0.1", "--master-port", str(nodes[2]),
    ]  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", *where,
               "--nproc-per-node", str(nproc), str(ENTRY), *map(str, args)]  # fmt: skip
    full_env = {**ONE_THREAD, **(env or {})}
    if not wait:
        return subprocess.Popen(
            command, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    return subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=600)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (torchrun starts its ranks in sessions of
    their own, so a process group does not reach them), children first found, then killed."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            children = (task / "children").read_text().split()
            todo.extend(int(c) for c in children)
    for member in reversed(tree):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def train_args(data: Path, output: Path, batch: int) -> list:
    return ["train", "--data", data, "--output", output, "--batch-size", batch, *COMMON]


def assert_same_weights(a: Path, b: Path, atol: float = 1e-5) -> None:
    ours, theirs = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.allclose(ours[key], theirs[key], atol=atol, rtol=0), key


def history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def one_process(ddp_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "run"
    command = [sys.executable, "-m", "deepfake_detect.cli",
               *map(str, train_args(ddp_data, out, GLOBAL_BATCH))]  # fmt: skip
    result = subprocess.run(command, env=ONE_THREAD, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def two_processes(ddp_data, tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("two")
    out, record = base / "run", base / "writes"
    record.mkdir()
    cache = base / "cache"
    env = {"WRITES_WATCH": f"{out}:{cache}", "WRITES_RECORD": str(record),
           "DEEPFAKE_DETECT_CACHE": str(cache)}  # fmt: skip
    args = train_args(ddp_data, out, GLOBAL_BATCH // 2)
    args.remove("--no-audit")  # the audit writes its cache: rank 0 only
    result = torchrun(args, env=env)
    assert result.returncode == 0, result.stderr
    return out, record


def test_two_processes_train_as_one_with_the_same_global_batch(one_process, two_processes):
    run, _ = two_processes
    assert_same_weights(run, one_process)
    ours, theirs = history(run), history(one_process)
    assert [r["epoch"] for r in ours] == [r["epoch"] for r in theirs] == list("12345")
    for a, b in zip(ours, theirs, strict=True):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_auc"):
            assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-5), key
    one, two = (json.loads((r / "config.json").read_text()) for r in (one_process, run))
    assert two["threshold"] == pytest.approx(one["threshold"], abs=1e-5)
    assert two["temperature"] == pytest.approx(one["temperature"], rel=1e-4)
    assert {p.name for p in run.iterdir()} == {p.name for p in one_process.iterdir()}


def test_rank_0_alone_writes_files(two_processes):
    _, record = two_processes
    rank0 = json.loads((record / "rank-0.json").read_text())
    rank1 = json.loads((record / "rank-1.json").read_text())
    assert rank1 == []
    written = " ".join(rank0)
    assert "model.safetensors" in written and "history.csv" in written and "audit" in written


def test_a_run_killed_mid_epoch_resumes_under_torchrun(ddp_data, two_processes, tmp_path):
    reference, _ = two_processes
    out = tmp_path / "killed"
    args = train_args(ddp_data, out, GLOBAL_BATCH // 2)
    args.remove("--no-audit")
    process = torchrun(args, wait=False)
    wait_for_epoch(out / "state.json", epoch=3, process=process)
    kill_tree(process.pid)  # torchrun and both ranks, inside epoch 4 or 5
    process.wait()
    state = json.loads((out / "state.json").read_text())
    assert 3 <= state["epoch"] < 5 and not state["done"]
    record = tmp_path / "writes"
    record.mkdir()
    env = {"WRITES_WATCH": str(out), "WRITES_RECORD": str(record)}
    result = torchrun([*args, "--resume"], env=env)
    assert result.returncode == 0, result.stderr
    assert (out / "history.csv").read_text() == (reference / "history.csv").read_text()
    assert_same_weights(out, reference, atol=0)
    # rank 0 alone tidied what the kill left and wrote the rest of the run
    assert json.loads((record / "rank-1.json").read_text()) == []
    assert json.loads((record / "rank-0.json").read_text())


def test_two_nodes_on_one_machine_train_as_one_node(ddp_data, two_processes, tmp_path):
    reference, _ = two_processes
    out, port = tmp_path / "nodes", free_port()
    args = train_args(ddp_data, out, GLOBAL_BATCH // 2)
    args.remove("--no-audit")
    nodes = [torchrun(args, nproc=1, nodes=(rank, 2, port), wait=False) for rank in (0, 1)]
    for node in nodes:
        assert node.wait(timeout=600) == 0, node.stderr.read().decode()
    assert_same_weights(out, reference)


def test_ranks_that_see_different_data_stop_with_one_clear_error(ddp_data, tmp_path):
    """Two nodes whose data folders differ (here: rank 1's copy lacks an image)."""
    other = tmp_path / "other"
    write_class_folders(other / "alpha", 80, seed=5)
    next((other / "alpha" / "real").iterdir()).unlink()
    port, out = free_port(), tmp_path / "run"
    nodes = [
        torchrun(train_args(data, out, 64), nproc=1, nodes=(rank, 2, port), wait=False)
        for rank, data in ((0, ddp_data), (1, other))
    ]
    errors = [node.communicate(timeout=600)[1].decode() for node in nodes]
    assert all(node.returncode != 0 for node in nodes)
    assert "ranks disagree about the data and options" in "".join(errors)
    assert not out.exists()


def test_two_process_predict_writes_the_one_process_output(trained_run, tmp_path):
    images = tmp_path / "images"
    write_class_folders(images, 9, seed=11)
    (images / "real" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    common = ["predict", images, "--model", trained_run, "--engine", "torch", "--device", "cpu",
              "--batch-size", "2", "--no-provenance"]  # fmt: skip
    single = subprocess.run(
        [sys.executable, "-m", "deepfake_detect.cli", *map(str, common),
         "--output", str(tmp_path / "one.csv")],
        env=ONE_THREAD, capture_output=True, text=True,
    )  # fmt: skip
    assert single.returncode == 1  # the broken file
    double = torchrun([*common, "--output", tmp_path / "two.csv"])
    assert double.returncode != 0
    one, two = (tmp_path / "one.csv").read_text(), (tmp_path / "two.csv").read_text()
    assert one == two and "broken.png" in two and len(two.splitlines()) == 20


def test_two_process_evaluate_gives_the_one_process_metrics(
    trained_run, multi_source_data, tmp_path
):
    common = ["evaluate", "--model", trained_run, "--data", multi_source_data,
              "--engine", "torch", "--device", "cpu", "--split", "all"]  # fmt: skip
    single = subprocess.run(
        [sys.executable, "-m", "deepfake_detect.cli", *map(str, common),
         "--output", str(tmp_path / "one")],
        env=ONE_THREAD, capture_output=True, text=True,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    double = torchrun([*common, "--output", tmp_path / "two"])
    assert double.returncode == 0, double.stderr
    one, two = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert one["roc_auc"] == two["roc_auc"] and one["n_images"] == two["n_images"]
    assert (tmp_path / "one" / "scores.csv").read_text() == (
        tmp_path / "two" / "scores.csv"
    ).read_text()


@pytest.fixture(scope="module")
def trained_run(multi_source_data, tmp_path_factory) -> Path:
    from conftest import tiny_options

    from deepfake_detect.training.trainer import train

    run_dir = tmp_path_factory.mktemp("ddp-model") / "tiny"
    train(tiny_options(multi_source_data, run_dir, frozen_epochs=1, finetune_epochs=0))
    return run_dir


# -- the pieces, in one process ----------------------------------------------------------------


def test_shards_cover_the_order_once_padded_with_its_first_items():
    order = [5, 3, 8, 1, 9]
    parts = [shard(order, World(rank, 2)) for rank in range(2)]
    assert parts == [[5, 8, 9], [3, 1, 5]]  # padded to 6 with the first item
    assert shard(order, World(0, 1)) == order
    # scoring shares are not padded: each item scored once, on one rank
    assert [shard(order, World(rank, 2), pad=False) for rank in range(2)] == [[5, 8, 9], [3, 1]]


def test_every_rank_takes_its_share_of_the_same_balanced_order():
    from deepfake_detect.distributed import ShardSampler
    from deepfake_detect.training.loop import StratifiedSampler

    keys = ["a"] * 7 + ["b"] * 3

    def order(seed):
        return StratifiedSampler(keys, torch.Generator().manual_seed(seed))

    whole = list(order(3))
    parts = [list(ShardSampler(World(rank, 2), order(3))) for rank in range(2)]
    assert [x for pair in zip(*parts, strict=True) for x in pair] == whole
    unpadded = ShardSampler(World(1, 3), 10, pad=False)
    assert len(unpadded) == len(list(unpadded)) == 3


def test_rank_slices_cut_at_batch_boundaries_and_cover_every_item():
    assert rank_slices(10, 2, 4) == [slice(0, 8), slice(8, 10)]
    assert rank_slices(3, 4, 1) == [slice(0, 1), slice(1, 2), slice(2, 3), slice(3, 3)]
    for total, size, align in [(0, 2, 3), (17, 3, 4), (64, 2, 32), (5, 8, 2)]:
        cuts = rank_slices(total, size, align)
        assert len(cuts) == size
        assert [i for c in cuts for i in range(total)[c]] == list(range(total))
        assert all((c.stop - c.start) % align == 0 for c in cuts if c.stop < total)


def test_map_across_ranks_keeps_input_order():
    items = list(range(11))
    results = [list(map_across_ranks(World(0, 1), items, lambda part: [x * 2 for x in part], 4))]
    assert results == [[x * 2 for x in items]]


def test_gather_by_index_is_the_identity_in_one_process():
    values = torch.arange(4.0)
    assert gather_by_index(World(), values, [0, 1, 2, 3], 4) is values


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, World()), ({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, World(1, 4, 1))],
)
def test_the_world_comes_from_torchruns_environment(env, expected):
    assert launched_world(env) == expected


@pytest.mark.parametrize(
    "env",
    [{"RANK": "x", "WORLD_SIZE": "2"}, {"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}],
)
def test_a_malformed_torchrun_environment_is_one_clear_error(env):
    with pytest.raises(DataError, match="torchrun's environment"):
        launched_world(env)


def test_train_throughput_script_times_every_mode(capsys):
    from conftest import load_script

    script = load_script("train_throughput")
    args = ["--model", "test_efficientnet@32", "--steps", "2", "--warmup", "1", "--batch-size", "4",
            "--device", "cpu", "--json"]  # fmt: skip
    assert script.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["mode"] for r in out["rows"]] == ["fp32", "fp32+channels-last", "bf16",
                                                "bf16+channels-last"]
    assert all(r["images_per_second"] > 0 and r["backbone"] == "test_efficientnet"
               for r in out["rows"])  # fmt: skip
    with pytest.raises(SystemExit):
        script.parse_args(["--model", "test_efficientnet"])  # no @SIZE


def _gather_in_a_group(rank: int, store: str, out: str) -> None:
    """One of two gloo processes: unequal, unpadded shares of 5 items back into input order."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    world = World(rank, 2)
    mine = shard(list(range(5)), world, pad=False)  # rank 0: 0, 2, 4; rank 1: 1, 3
    flat = torch.tensor([[i, -i] for i in mine], dtype=torch.float32).reshape(-1)
    scores = torch.tensor([i / 10 for i in mine])
    result = {
        "features": gather_by_index(world, flat, mine, 5).tolist(),
        "scores": gather_by_index(world, scores, mine, 5).tolist(),
        "none_here": gather_by_index(world, scores[: 1 - rank], [0][: 1 - rank], 1).tolist(),
    }
    if rank == 0:
        Path(out).write_text(json.dumps(result))
    dist.destroy_process_group()


def test_gather_by_index_puts_unequal_shares_back_in_order(tmp_path):
    out = tmp_path / "gathered.json"
    torch.multiprocessing.spawn(
        _gather_in_a_group, args=(str(tmp_path / "store"), str(out)), nprocs=2
    )
    result = json.loads(out.read_text())
    assert result["features"] == [float(x) for i in range(5) for x in (i, -i)]
    assert result["scores"] == pytest.approx([i / 10 for i in range(5)])
    assert result["none_here"] == [0.0]  # one item in all: rank 1 has none to give
