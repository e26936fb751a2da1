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


#: Seconds to wait for the Hugging Face hub before treating it as unreachable.
HUB_TIMEOUT_S = 3.0


def download_command() -> str:
    """The download command the installed huggingface_hub provides (``hf`` since 0.34)."""
    from importlib import metadata

    try:
        major, minor = (int(part) for part in metadata.version("huggingface_hub").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return "hf download"
    return "hf download" if (major, minor) >= (0, 34) else "huggingface-cli download"


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within ``timeout`` (``HF_HUB_OFFLINE``: no)."""
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        return False
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def missing_weights_message(model_size: str, where: str) -> str:
    """One line: what is missing, where it comes from and the three ways to proceed."""
    files = required_files(model_size)
    names = " and ".join(name for _, name in files)
    repos = " and ".join(f"{repo}/{name}" for repo, name in files)
    command = download_command()
    downloads = "; ".join(f"{command} {repo} {name}" for repo, name in files)
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
    files = required_files(model_size)
    found = {name: _hub_file(repo, name, download=False) for repo, name in files}
    how = "not in the Hugging Face cache"
    if download and any(path is None for path in found.values()):
        # One quick reachability check instead of the hub client's minute of retries offline.
        if not hub_reachable():
            how += " and the hub is unreachable (offline, or HF_HUB_OFFLINE is set)"
        else:
            found = {
                name: path or _hub_file(repo, name, True)
                for (repo, name), path in zip(files, found.values(), strict=True)
            }
            how += " and downloading them failed"
    missing = [name for name, path in found.items() if path is None]
    if missing:
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
            them into it, if the hub answers within :data:`HUB_TIMEOUT_S` seconds (set
            ``HF_HUB_OFFLINE=1`` to skip the network entirely).

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
