"""The pinned torch stack works together (a mismatched torchvision fails here, loudly)."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision


def test_torchvision_operators_match_torch() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
    keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]


def test_installed_versions_are_the_pinned_ones() -> None:
    pins = {}
    for line in (Path(__file__).resolve().parents[1] / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip()] = version.strip()
    assert torch.__version__.split("+")[0] == pins["torch"]
    assert torchvision.__version__.split("+")[0] == pins["torchvision"]
