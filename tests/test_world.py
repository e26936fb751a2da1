"""``--num-nodes`` / ``--devices`` against the processes torchrun started (its environment variables)."""

from __future__ import annotations

import pytest

from axion.errors import ConfigError
from axion.runtime.device import check_world, launch_rank


def torchrun_env(*, nodes: int, per_node: int, node: int = 0, local: int = 0) -> dict[str, str]:
    """What torchrun sets in the process ``local`` of node ``node``."""
    return {
        "RANK": str(node * per_node + local),
        "LOCAL_RANK": str(local),
        "WORLD_SIZE": str(nodes * per_node),
        "LOCAL_WORLD_SIZE": str(per_node),
        "GROUP_RANK": str(node),
        "GROUP_WORLD_SIZE": str(nodes),
    }


def test_a_matching_world_passes_and_names_the_rank() -> None:
    env = torchrun_env(nodes=2, per_node=4, node=1, local=3)
    assert check_world(2, 4, env) is True
    assert launch_rank(env) == 7
    assert check_world(1, 1, {}) is False and launch_rank({}) == 0


@pytest.mark.parametrize(
    ("num_nodes", "devices", "env", "message"),
    [
        (2, 1, {}, "--num-nodes 2 needs a launcher that starts the processes on every node"),
        (
            1,
            1,
            torchrun_env(nodes=1, per_node=2),
            "torchrun started 2 processes on this node (LOCAL_WORLD_SIZE) but --devices is 1",
        ),
        (
            1,
            2,
            torchrun_env(nodes=2, per_node=2),
            "--num-nodes 1 x --devices 2 = 2: give torchrun --nnodes 1, or --num-nodes 2",
        ),
        (3, 2, torchrun_env(nodes=2, per_node=2), "runs 4 processes on 2 node(s)"),
        (
            2,
            2,
            {**torchrun_env(nodes=2, per_node=2), "GROUP_RANK": "2"},
            "GROUP_RANK, NODE_RANK) is 2, outside 0..1",
        ),
        (
            1,
            2,
            {**torchrun_env(nodes=1, per_node=2), "WORLD_SIZE": "two"},
            "WORLD_SIZE='two' is not a number",
        ),
    ],
)
def test_a_world_that_disagrees_is_one_line_naming_the_variable(
    num_nodes: int, devices: int, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        check_world(num_nodes, devices, env)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("command", ["train", "infer"])
def test_several_nodes_without_torchrun_are_refused_by_the_cli(
    command: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from axion.cli import app

    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "scenes.csv").write_text("s1,opt_v2,output\na.tif,b.tif,c.tif\n")
    args = {
        "train": ["--data-dir", tmp_path, "--output-dir", tmp_path / "run"],
        "infer": ["--checkpoint", tmp_path / "none.pt", "--scenes", tmp_path / "scenes.csv"],
    }[command]
    result = CliRunner().invoke(app, ["stage3", command, *map(str, args), "--num-nodes", "2"])
    assert result.exit_code == 2
    assert "--num-nodes 2 needs a launcher that starts the processes on every node" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenes.csv"]
