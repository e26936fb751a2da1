"""Pretrained weights: found, loaded offline from a weights dir, or a clear error; adapter files."""

from __future__ import annotations

import pytest
import torch

from axion.config import ModelConfig
from axion.errors import WeightsError
from axion.model import build_stage3_model, check_weights
from axion.model.lora import merge_lora, unmerge_lora
from axion.model.terramind import ENCDEC_PREFIX, S2_TARGET
from axion.model.weights import TOKENIZER_FILE, TOKENIZER_REPO, generator_file, generator_repo

from .conftest import loaded


@pytest.mark.parametrize("size", ["tiny", "small", "base", "large"])
def test_file_names_and_repositories_equal_terratorch(size):
    from terratorch.models.backbones.terramind.model import terramind_register
    from terratorch.models.backbones.terramind.tokenizer import tokenizer_register

    gen = terramind_register.pretrained_weights[f"terramind_v1_{size}"]
    tok = tokenizer_register.pretrained_weights["terramind_v1_tokenizer_s2l2a"]
    assert (gen["hf_hub_id"], gen["hf_hub_filename"]) == (generator_repo(size), generator_file(size))
    assert (tok["hf_hub_id"], tok["hf_hub_filename"]) == (TOKENIZER_REPO, TOKENIZER_FILE)


def test_no_pretrained_needs_no_files():
    assert check_weights(ModelConfig(model_size="tiny", pretrained=False)) is None


def test_missing_files_in_weights_dir_give_one_clear_error(tmp_path):
    with pytest.raises(WeightsError) as err:
        check_weights(ModelConfig(model_size="small", weights_dir=tmp_path))
    message = str(err.value)
    assert "\n" not in message
    for needed in ("TerraMind_v1_small.pt", TOKENIZER_FILE, generator_repo("small"), TOKENIZER_REPO):
        assert needed in message
    assert "--weights-dir" in message and "hf download" in message and "--no-pretrained" in message


def test_missing_files_in_hub_cache_give_the_same_error(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsError, match="TerraMind_v1_tiny.pt.*not in the Hugging Face cache"):
        check_weights(ModelConfig(model_size="tiny"), download=False)


def test_unreachable_hub_fails_at_once_without_retries(tmp_path, monkeypatch):
    """Offline, one quick reachability check replaces the hub client's retries; the message says
    which download command the installed huggingface_hub provides."""
    import huggingface_hub
    from huggingface_hub import constants

    from axion.model import weights

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    calls = []
    real = huggingface_hub.hf_hub_download

    def recording(*args, **kwargs):
        calls.append(kwargs.get("local_files_only", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", recording)
    monkeypatch.setattr(weights, "hub_reachable", lambda timeout=weights.HUB_TIMEOUT_S: False)
    with pytest.raises(WeightsError) as err:
        check_weights(ModelConfig(model_size="tiny"))
    message = str(err.value)
    assert (
        "the hub is unreachable" in message and "hf download ibm-esa-geospatial/TerraMind-1.0-tiny" in message
    )
    assert calls and all(calls), "a download was attempted although the hub is unreachable"


def test_hf_hub_offline_means_unreachable_without_a_connection(monkeypatch):
    import socket

    from axion.model.weights import hub_reachable

    def no_network(*args, **kwargs):
        raise AssertionError("a connection was attempted although HF_HUB_OFFLINE is set")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", no_network)
    assert hub_reachable() is False


def _strip_lora(key: str) -> str | None:
    """A LoRA-wrapped model's state key -> the plain model's key (None for adapter weights)."""
    return None if "lora_" in key else key.replace(".base_layer.", ".")


@pytest.fixture(scope="module")
def hub_files(tiny_model, tmp_path_factory):
    """The tiny model's random weights written in the hub's format, under the original file names."""
    state = {_strip_lora(k): v for k, v in tiny_model.generator.state_dict().items() if _strip_lora(k)}
    encdec = {k[len(ENCDEC_PREFIX) :]: v for k, v in state.items() if k.startswith(ENCDEC_PREFIX)}
    encdec["encoder_embeddings.untok_dem@224.mod_emb"] = torch.zeros(1, 1, 192)  # another modality, ignored
    prefix = f"tokenizer.{S2_TARGET}."
    tokenizer = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    folder = tmp_path_factory.mktemp("weights")
    torch.save(encdec, folder / generator_file("tiny"))
    torch.save(tokenizer, folder / TOKENIZER_FILE)
    return folder, state


@pytest.fixture(scope="module")
def loaded_rank4(hub_files):
    folder, _ = hub_files
    messages: list[str] = []
    cfg = ModelConfig(model_size="tiny", pretrained=True, weights_dir=folder, timesteps=1, lora_rank=4)
    return build_stage3_model(cfg, log=messages.append), messages


def test_pretrained_from_weights_dir_loads_offline_and_exactly(hub_files, loaded_rank4):
    _, saved = hub_files
    model, messages = loaded_rank4
    assert any("Loaded pretrained TerraMind-tiny" in m for m in messages), messages
    assert not any("warning" in m for m in messages), messages
    loaded = {_strip_lora(k): v for k, v in model.generator.state_dict().items() if _strip_lora(k)}
    assert loaded.keys() == saved.keys()
    differing = [k for k in saved if not torch.equal(loaded[k], saved[k])]
    assert differing == []


def test_trainable_state_dict_loads_with_weights_only(tiny_model, tmp_path):
    torch.save(tiny_model.trainable_state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    tiny_model.load_trainable_state_dict(state)


def test_adapters_of_another_rank_fail_clearly(tiny_model, loaded_rank4):
    model4, _ = loaded_rank4
    with pytest.raises(WeightsError, match="another size or rank"):
        model4.load_trainable_state_dict(tiny_model.trainable_state_dict())


def test_merged_adapters_give_the_same_output(tiny_model, real_batch, wake):
    wake()
    s1, opt_v2 = real_batch[0][:1], real_batch[1][:1]
    before = tiny_model.generate(s1, opt_v2, seeds=[3])
    # Merge then unmerge adds and subtracts B A in float: the base weights come back rounded,
    # and the session's model must keep its exact random base (test_structure checks it).
    base = {n: p.detach().clone() for n, p in tiny_model.named_parameters() if ".base_layer." in n}
    with loaded(tiny_model, base):
        assert merge_lora(tiny_model.generator) > 0
        try:
            merged = tiny_model.generate(s1, opt_v2, seeds=[3])
        finally:
            unmerge_lora(tiny_model.generator)
    # Merged weights are rounded sums, so the output moves by float rounding only: up to ~1e-4 of
    # the value (tile units reach thousands).
    torch.testing.assert_close(merged, before, atol=0.05, rtol=2e-4)
    assert not torch.equal(before, opt_v2)
