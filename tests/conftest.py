"""Shared test fixtures: real data from ../shared, one tiny model per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# lightly (pulled in through torchgeo/terratorch) would try the network on import.
os.environ.setdefault("LIGHTLY_DID_VERSION_CHECK", "True")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AXION_SHARED", REPO.parent / "shared")).resolve()
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: real S1/S2 samples (never copied into the repository)."""
    assert DATA.is_dir(), f"real test data not found at {DATA} (set AXION_SHARED)"
    return DATA


@pytest.fixture(scope="session")
def terramind_examples(shared_data: Path) -> Path:
    """Five co-registered 224 px S1RTC/S2L2A scenes."""
    return shared_data / "terramind-examples"


@pytest.fixture(scope="session")
def sen1floods11(shared_data: Path) -> Path:
    """One 512 px S1 GRD + S2 L1C scene."""
    return shared_data / "sen1floods11-sample"


@pytest.fixture(scope="session")
def lpips_weights() -> Path:
    """AlexNet ImageNet feature weights for LPIPS (torchvision format)."""
    path = SHARED / "weights" / "alexnet-features-imagenet.pth"
    assert path.is_file(), f"LPIPS backbone weights not found at {path}"
    return path


# --- model fixtures (tiny TerraMind, built once per session) -----------------


@pytest.fixture(scope="session")
def tiny_build():
    """The tiny Stage 3 model with random weights, built once, and the messages its build logged.

    Tests that change its weights must restore them (see tests/model/conftest.py).
    """
    from axion.config import ModelConfig
    from axion.model import build_stage3_model

    messages: list[str] = []
    cfg = ModelConfig(model_size="tiny", pretrained=False, timesteps=1, lora_rank=8, lora_alpha=16)
    model = build_stage3_model(cfg, log=messages.append)
    return model, messages


@pytest.fixture(scope="session")
def tiny_model(tiny_build):
    """The session's tiny Stage 3 model (random TerraMind weights, identity start)."""
    return tiny_build[0]
