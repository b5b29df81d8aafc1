"""The install step pairs torch with a torchvision whose compiled ops load (they fail otherwise)."""

from __future__ import annotations

import torch
import torchvision
from torchvision.ops import nms


def test_torchvision_ops_run_on_this_torch() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50, 50, 60, 60]])
    keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    assert torch.__version__.startswith("2.14.1") and torchvision.__version__.startswith("0.29.1")


def test_resnet101_builds_offline_from_random_init() -> None:
    model = torchvision.models.resnet101(weights=None)
    assert sum(p.numel() for p in model.parameters()) == 44_549_160
