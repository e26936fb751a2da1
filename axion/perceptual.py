"""LPIPS (AlexNet) built offline, and the masked perceptual term on tile-unit images.

The ``lpips`` package ships its calibrated linear heads but would download the
ImageNet AlexNet backbone through torchvision on first use. Here the backbone
is always loaded from a local file: the configured path (``--lpips-weights`` /
``AXION_LPIPS_WEIGHTS``) or else torchvision's own cache. Nothing is ever
downloaded; without the file, :class:`~axion.errors.WeightsError` says where it
looked and how to provide it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from axion.bands import RGB_INDICES
from axion.errors import WeightsError, load_weights_only
from axion.masked import check_shapes, in_fp32, masked_mean, valid_pixels

if TYPE_CHECKING:
    import lpips

#: File name torchvision gives the ImageNet AlexNet weights in its hub cache.
TORCHVISION_ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
#: Tile-unit range mapped linearly onto LPIPS's [-1, 1] input (then clamped):
#: reflectance 0 -> -1, reflectance 0.3 -> +1, which spans most land surfaces.
LPIPS_INPUT_RANGE: tuple[float, float] = (0.0, 3000.0)
#: AlexNet ``features`` layers that carry weights, and their shapes.
ALEXNET_FEATURE_SHAPES: dict[str, tuple[int, ...]] = {
    "features.0.weight": (64, 3, 11, 11),
    "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5),
    "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3),
    "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3),
    "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3),
    "features.10.bias": (256,),
}

_HOW_TO_PROVIDE = (
    "provide torchvision's ImageNet AlexNet weights with --lpips-weights PATH or AXION_LPIPS_WEIGHTS=PATH "
    "(a torchvision AlexNet state dict; the features.* keys suffice), "
    "or disable the LPIPS term with --lpips-weight 0"
)


def torchvision_cache_file() -> Path:
    """Where torchvision keeps the AlexNet weights (``$TORCH_HOME/hub/checkpoints/...``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_ALEXNET_FILE


def resolve_lpips_weights(configured: Path | None) -> Path:
    """The AlexNet weights file to use: the configured one, else torchvision's cache.

    Raises:
        WeightsError: the file is not there; the message names the path(s) tried.
    """
    if configured is not None:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"LPIPS backbone weights not found at {path} (lpips_weights); {_HOW_TO_PROVIDE}"
            )
        return path
    cached = torchvision_cache_file()
    if not cached.is_file():
        raise WeightsError(
            f"LPIPS needs ImageNet AlexNet weights: no lpips_weights configured and none in torchvision's "
            f"cache at {cached}; {_HOW_TO_PROVIDE}"
        )
    return cached


def load_alexnet_features(path: Path) -> dict[str, Tensor]:
    """Read and check AlexNet ``features.*`` weights from a torchvision-format state dict.

    Raises:
        WeightsError: unreadable file, or missing / misshapen keys.
    """
    state = load_weights_only(path, WeightsError, "cannot read LPIPS backbone weights")
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected an AlexNet state dict, got {type(state).__name__}")
    missing = [k for k in ALEXNET_FEATURE_SHAPES if k not in state]
    if missing:
        raise WeightsError(f"{path}: not torchvision AlexNet weights (missing {', '.join(missing)})")
    for key, shape in ALEXNET_FEATURE_SHAPES.items():
        if tuple(state[key].shape) != shape:
            raise WeightsError(f"{path}: {key} has shape {tuple(state[key].shape)}, expected {shape}")
    return {key: state[key].float() for key in ALEXNET_FEATURE_SHAPES}


def build_lpips(weights: Path | None) -> lpips.LPIPS:
    """LPIPS-alex v0.1 with a spatial output, its backbone loaded from a local file.

    Args:
        weights: AlexNet weights file, or ``None`` for torchvision's cache.

    Raises:
        WeightsError: see :func:`resolve_lpips_weights` and :func:`load_alexnet_features`.
    """
    features = load_alexnet_features(resolve_lpips_weights(weights))
    import lpips

    # pnet_rand=True builds the backbone without asking torchvision for weights
    # (no download); the calibrated linear heads come from the lpips package.
    with warnings.catch_warnings():
        # lpips still calls torchvision's deprecated ``pretrained=`` argument.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\.models\._utils")
        net = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, spatial=True, verbose=False)
    backbone: nn.Module = net.net
    renamed: dict[str, Tensor] = {}
    for slice_name, block in backbone.named_children():
        for index, layer in block.named_children():
            for param in ("weight", "bias"):
                key = f"features.{index}.{param}"
                if key in features and hasattr(layer, param):
                    renamed[f"{slice_name}.{index}.{param}"] = features[key]
    backbone.load_state_dict(renamed, strict=True)
    net.eval()
    net.requires_grad_(False)
    return net


def to_lpips_input(optical: Tensor) -> Tensor:
    """(B, 4, H, W) tile units -> (B, 3, H, W) true colour (B4, B3, B2) in [-1, 1]."""
    low, high = LPIPS_INPUT_RANGE
    rgb = optical[:, list(RGB_INDICES)]
    return ((rgb - low) / (high - low) * 2.0 - 1.0).clamp(-1.0, 1.0)


class PerceptualLoss(nn.Module):
    """Masked LPIPS distance between two tile-unit optical images, per sample (B,).

    Padded pixels are set to the same value (0, mid-grey) in both images, and
    the spatial LPIPS map is averaged over valid pixels only. The network stays
    in eval mode (no dropout) and frozen even when the owner is put in training
    mode. Runs in fp32 with autocast off.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Track the mode but keep LPIPS itself in eval (its heads have dropout)."""
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        """LPIPS distance per sample, (B,); 0 for a sample without valid pixels."""
        return _masked_lpips(self.net, pred, target, mask)


@in_fp32
def _masked_lpips(net: nn.Module, pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    check_shapes(mask, pred=(pred, 4), target=(target, 4))
    valid = valid_pixels(mask)
    a = torch.where(valid, to_lpips_input(pred), torch.zeros((), device=pred.device))
    b = torch.where(valid, to_lpips_input(target), torch.zeros((), device=pred.device))
    distance_map = net(a, b)  # (B, 1, H, W) with spatial=True
    return masked_mean(distance_map, valid)


def build_perceptual_loss(weights: Path | None) -> PerceptualLoss:
    """:class:`PerceptualLoss` around :func:`build_lpips` (see there for errors)."""
    return PerceptualLoss(build_lpips(weights))
