"""Where TerraMind's pretrained files come from, checked before any data work.

Two files make a pretrained Stage 3 generator: the encoder-decoder of the chosen
size and the S2L2A tokenizer (whose diffusion UNet turns tokens into pixels).
They are read either from a local directory that holds the original files under
their original names, or from the Hugging Face cache (downloading into it when
the hub is reachable). This module imports neither torch nor terratorch, so the
check is cheap enough to run first thing in a command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from axion.config import ModelConfig
from axion.errors import WeightsError

#: Hugging Face repository of the S2L2A tokenizer, and its file.
TOKENIZER_REPO = "ibm-esa-geospatial/TerraMind-1.0-Tokenizer-S2L2A"
TOKENIZER_FILE = "TerraMind_Tokenizer_S2L2A.pt"


def generator_repo(model_size: str) -> str:
    """Hugging Face repository of TerraMind's encoder-decoder of this size."""
    return f"ibm-esa-geospatial/TerraMind-1.0-{model_size}"


def generator_file(model_size: str) -> str:
    """File name of TerraMind's encoder-decoder of this size (in its repository and in a weights dir)."""
    return f"TerraMind_v1_{model_size}.pt"


@dataclass(frozen=True)
class WeightFiles:
    """Resolved paths of the two pretrained files."""

    generator: Path
    tokenizer: Path
    source: str


def required_files(model_size: str) -> list[tuple[str, str]]:
    """(repository, file name) of every file a pretrained build needs."""
    return [(generator_repo(model_size), generator_file(model_size)), (TOKENIZER_REPO, TOKENIZER_FILE)]


def missing_weights_message(model_size: str, where: str) -> str:
    """One line: what is missing, where it comes from and the three ways to proceed."""
    files = required_files(model_size)
    names = " and ".join(name for _, name in files)
    repos = " and ".join(f"{repo}/{name}" for repo, name in files)
    downloads = "; ".join(f"huggingface-cli download {repo} {name}" for repo, name in files)
    return (
        f"pretrained TerraMind weights not found ({where}): need {names} from the Hugging Face "
        f"repositories {repos}. Either pass --weights-dir DIR with these files under these names, "
        f"or download them into the Hugging Face cache ({downloads}), "
        f"or train from random weights with --no-pretrained"
    )


def _from_dir(weights_dir: Path, model_size: str) -> WeightFiles:
    generator = weights_dir / generator_file(model_size)
    tokenizer = weights_dir / TOKENIZER_FILE
    missing = [p.name for p in (generator, tokenizer) if not p.is_file()]
    if missing:
        raise WeightsError(missing_weights_message(model_size, f"{weights_dir} lacks {', '.join(missing)}"))
    return WeightFiles(generator=generator, tokenizer=tokenizer, source=str(weights_dir))


def _hub_file(repo: str, filename: str, download: bool) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename, local_files_only=True))
    except LocalEntryNotFoundError:
        if not download:
            return None
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError):
        return None


def _from_hub(model_size: str, download: bool) -> WeightFiles:
    found = {name: _hub_file(repo, name, download) for repo, name in required_files(model_size)}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        how = "not in the Hugging Face cache" + (" and the hub is unreachable" if download else "")
        raise WeightsError(missing_weights_message(model_size, f"{', '.join(missing)} {how}"))
    return WeightFiles(
        generator=found[generator_file(model_size)],  # type: ignore[arg-type]
        tokenizer=found[TOKENIZER_FILE],  # type: ignore[arg-type]
        source="Hugging Face cache",
    )


def check_weights(cfg: ModelConfig, *, download: bool = True) -> WeightFiles | None:
    """Find the pretrained files, or fail with one clear message.

    Args:
        cfg: the model settings. ``pretrained=False`` or ``generator="none"`` needs no files (returns None).
        download: when the files are not in the Hugging Face cache, try to download
            them into it (set ``HF_HUB_OFFLINE=1`` to skip the network entirely).

    Returns:
        The two file paths, or None for random weights.

    Raises:
        WeightsError: a file is missing; the message names the files, their
            repositories and how to provide them.
    """
    if not cfg.pretrained or cfg.generator == "none":
        return None
    if cfg.weights_dir is not None:
        return _from_dir(Path(cfg.weights_dir), cfg.model_size)
    return _from_hub(cfg.model_size, download)
