"""Several processes started by torchrun, on this machine, through the path a cluster job takes.

``train`` runs as one node of 2 processes (``--nproc-per-node 2 --devices 2``); ``infer
--scenes`` as 2 nodes of 1 process each (two torchrun launchers meeting at 127.0.0.1,
``--num-nodes 2``). Both use gloo on the CPU; what differs on a real cluster is the network
between the nodes and NCCL on the GPUs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.commands.conftest import SCENE_NAMES
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "LIGHTLY_DID_VERSION_CHECK": "True",
    }


def _torchrun(launch: list[str], args: list[object]) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *launch,
        "-m",
        "axion",
        "stage3",
        *map(str, args),
    ]
    return subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=900)
    return process.returncode, output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_train_on_two_processes_writes_each_checkpoint_once(tiles_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--data-dir", tiles_dir, "--output-dir", out, "--model-size", "tiny", "--no-pretrained"]
    args += ["--lpips-weight", "0", "--timesteps", "1", "--num-workers", "0", "--quiet", "--epochs", "1"]
    args += ["--max-samples", "4", "--grad-accum", "1", "--devices", "2"]
    code, output = _finish(_torchrun(["--standalone", "--nproc-per-node", "2"], args))
    assert code == 0, output[-3000:]
    assert output.count("Devices: 2 x cpu; batch size 1 x accumulation 1 x devices 2") == 1  # rank 0 speaks
    assert "Tiles: 4 train" in output and "Epoch 1: 2/2" in output  # each process ran half the tiles
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [
        "best_model.pt",
        "checkpoint_epoch_1.pt",
        "config.json",
        "metrics.jsonl",
    ]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1]  # one row: only the first process writes
    training = json.loads((out / "config.json").read_text())["training"]
    assert (training["devices"], training["num_nodes"]) == (2, 1)


def test_infer_scenes_on_two_nodes_does_each_scene_once(
    untrained_checkpoint: Path, scene_crops: Path, tmp_path: Path
) -> None:
    rows = [f"{scene_crops}/{n}_s1.tif,{scene_crops}/{n}_opt_v2.tif,out/{n}.tif" for n in SCENE_NAMES]
    scene_list = tmp_path / "scenes.csv"
    scene_list.write_text("\n".join(["s1,opt_v2,output", *rows]) + "\n")
    args = ["infer", "--checkpoint", untrained_checkpoint, "--scenes", scene_list, "--tile-size", 64]
    args += ["--overlap", 0, "--quiet", "--devices", 1, "--num-nodes", 2]
    port = _free_port()
    launchers = [
        _torchrun(
            ["--nnodes", "2", "--node-rank", str(node), "--nproc-per-node", "1"]
            + ["--master-addr", "127.0.0.1", "--master-port", str(port)],
            args,
        )
        for node in (0, 1)
    ]
    (code0, node0), (code1, node1) = (_finish(p) for p in launchers)
    assert code0 == 0 and code1 == 0, node0[-3000:] + node1[-3000:]
    done = [line for line in (node0 + node1).splitlines() if line.startswith("done ")]
    assert sorted(done) == sorted(
        f"done row {i + 2}: {tmp_path / 'out' / n}.tif" for i, n in enumerate(SCENE_NAMES)
    )
    # Round-robin by rank: node 0 has rows 2 and 4, node 1 row 3; the summary counts both.
    assert [line.split(":")[0] for line in node1.splitlines() if line.startswith("done ")] == ["done row 3"]
    assert "Scenes: 3 done, 0 skipped (complete), 0 failed, of 3" in node0
    for name in SCENE_NAMES:
        assert (
            json.loads((tmp_path / "out" / f"{name}.json").read_text())["properties"]["axion:samples"] == "1"
        )

    # A launcher whose processes disagree with the flags: one line, before any model is built.
    code, output = _finish(_torchrun(["--standalone", "--nproc-per-node", "2"], args[:-4] + ["--devices", 1]))
    assert code != 0 and "exitcode  : 2" in output
    ours = output.split("torch/distributed/elastic")[0].splitlines()[:-1]  # before torchrun's own report
    assert len(ours) == 2, output[-3000:]
    for line in ours:
        assert line.startswith(
            "error: torchrun started 2 processes on this node (LOCAL_WORLD_SIZE) but --devices is 1"
        )
