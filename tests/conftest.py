"""Shared test fixtures: real data from ../shared, one tiny model per session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
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
def cloudy_and_clear(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """SEN12MS-CR's autumn patch: its cloudy and its clear acquisition, B2, B3, B4, B8 (float32)."""
    import rasterio

    root = shared_data / "sen12mscr-sample"
    images = []
    for folder in ("s2_cloudy", "s2_cloudfree"):
        with rasterio.open(root / folder / "ROIs1970_fall_139_p839.tif") as src:
            images.append(src.read([2, 3, 4, 8]).astype(np.float32))
    return images[0], images[1]


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


@pytest.fixture(scope="session")
def untrained_checkpoint(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the untrained tiny model: it returns opt_v2 exactly (identity start).

    Handy for exact checks of the machinery around the model (grids, nodata, encodings).
    """
    from axion.config import ModelConfig
    from axion.training.checkpoint import Checkpoint

    cfg = ModelConfig(model_size="tiny", pretrained=False, timesteps=1, lora_rank=8, lora_alpha=16)
    path = tmp_path_factory.mktemp("untrained") / "untrained.pt"
    Checkpoint(
        epoch=0,
        model_state_dict=tiny_model.trainable_state_dict(),
        config={"model": cfg.model_dump(mode="json"), "other": {"seed": 0}},
    ).write(path)
    return path


# --- leftovers of killed processes ------------------------------------------------------------


def fusion_checkpoint(path: Path, *, trained: bool = True) -> Path:
    """A checkpoint of the fusion network alone (``--generator none``, cheap to build); with
    ``trained``, its zero-started last layer given random weights, so inputs change the output."""
    import torch

    from axion.config import ModelConfig
    from axion.model import build_stage3_model
    from axion.training.checkpoint import Checkpoint

    cfg = ModelConfig(generator="none", pretrained=False)
    model = build_stage3_model(cfg)
    if trained:
        torch.manual_seed(0)
        with torch.no_grad():
            model.fusion.out.weight.normal_(0, 0.1)
    config = {"model": cfg.model_dump(mode="json"), "other": {"seed": 0}}
    Checkpoint(epoch=1, model_state_dict=model.trainable_state_dict(), config=config).write(path)
    return path


def killed_writer_leftover(target: Path) -> Path:
    """Let a separate process start an atomic write of ``target`` and die by SIGKILL half-way.

    Returns:
        The temporary file it left beside ``target`` (what a real crash leaves).
    """
    import signal
    import subprocess
    import sys

    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from axion.atomic import atomic_path\n"
        "with atomic_path(Path(sys.argv[1])) as tmp:\n"
        "    tmp.write_bytes(b'half written')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    before = set(target.parent.iterdir()) if target.parent.is_dir() else set()
    target.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code, str(target)], env=env, timeout=120)
    assert done.returncode == -signal.SIGKILL
    (leftover,) = set(target.parent.iterdir()) - before
    assert leftover.name.startswith(f".{target.name}.") and ".tmp" in leftover.name
    return leftover


def killed_staging_folder(directory: Path, kind: str) -> Path:
    """Let a separate process create a staging folder (:func:`axion.outputs.staging_name`) and die."""
    import signal
    import subprocess
    import sys

    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from axion.outputs import staging_name\n"
        "folder = Path(sys.argv[1]) / staging_name(sys.argv[2])\n"
        "folder.mkdir(parents=True)\n"
        "(folder / 'figure.png').write_bytes(b'half drawn')\n"
        "print(folder, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(directory), kind],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL
    return Path(done.stdout.strip())
