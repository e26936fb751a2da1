"""Export: peft's layout that peft itself loads onto terratorch's generator; a folder evaluate/infer read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from axion.cli import app
from axion.training.checkpoint import Checkpoint
from axion.training.trained import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    FUSION_WEIGHTS,
    MERGED_WEIGHTS,
    METADATA,
    read_trained,
)


@pytest.fixture
def awake_checkpoint(tiny_model, wake, tmp_path: Path) -> Path:
    """A checkpoint of the session's tiny model with non-zero LoRA and fusion weights."""
    wake()
    path = tmp_path / "best_model.pt"
    Checkpoint(
        epoch=3,
        model_state_dict=tiny_model.trainable_state_dict(),
        config={"model": tiny_model.cfg.model_dump(mode="json"), "other": {"seed": 5}},
    ).write(path)
    return path


def test_export_is_peft_loadable_and_reads_back(tiny_model, awake_checkpoint: Path, tmp_path: Path) -> None:
    from peft import PeftModel, get_peft_model_state_dict

    from axion.model.terramind import build_generator

    out = tmp_path / "export"
    result = CliRunner().invoke(
        app, ["stage3", "export", "--checkpoint", str(awake_checkpoint), "--output-dir", str(out), "--merge"]
    )
    assert result.exit_code == 0, result.output
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, FUSION_WEIGHTS, METADATA, MERGED_WEIGHTS):
        assert (out / name).is_file(), name
    meta = json.loads((out / METADATA).read_text())
    assert meta["model"]["lora_rank"] == 8 and meta["seed"] == 5 and meta["versions"]["torch"]
    config = json.loads((out / ADAPTER_CONFIG).read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8 and config["lora_alpha"] == 16

    # peft's own loader on a freshly built terratorch generator gets every adapter tensor.
    trained = tiny_model.trainable_state_dict()
    lora_ours = {k: v for k, v in trained.items() if "lora_" in k}
    peft_model = PeftModel.from_pretrained(build_generator("tiny", 1), out)
    loaded = get_peft_model_state_dict(peft_model)
    assert len(loaded) == len(lora_ours) == 84
    for name, value in lora_ours.items():
        key = "base_model.model." + name.removeprefix("arm.generator.").replace(".default.", ".")
        assert torch.equal(loaded[key], value), key

    # The folder reads back as the same trainable weights, settings and seed.
    again = read_trained(out)
    assert again.epoch == 3 and again.config["other"]["seed"] == 5
    assert again.model_state_dict.keys() == trained.keys()
    assert all(torch.equal(again.model_state_dict[k], v) for k, v in trained.items())

    # Merged weights are the base weights plus the LoRA update of each adapted layer.
    merged = load_file(str(out / MERGED_WEIGHTS))
    layer = tiny_model.generator.sampler.model.decoder[0].cross_attn.q
    scale = layer.scaling["default"]
    expected = (
        layer.base_layer.weight + scale * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    )
    torch.testing.assert_close(merged["sampler.model.decoder.0.cross_attn.q.weight"], expected)


def test_export_refuses_to_overwrite_and_a_damaged_folder_is_one_line(awake_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "export"
    runner = CliRunner()
    args = ["stage3", "export", "--checkpoint", str(awake_checkpoint), "--output-dir", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    before = (out / FUSION_WEIGHTS).read_bytes()
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "already holds an export" in result.output
    assert (out / FUSION_WEIGHTS).read_bytes() == before
    (out / ADAPTER_WEIGHTS).write_bytes(b"not safetensors")
    from axion.errors import DataError

    with pytest.raises(DataError, match="adapter_model.safetensors: not a readable safetensors file"):
        read_trained(out)
