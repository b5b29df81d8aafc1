"""Inference speed-ups that keep the math: BatchNorm folded into the preceding conv, and
channels_last memory layout. Both give the same detections up to float rounding.

Eager fp32 on this CPU is already near the matmul peak (bench/detector_speed.py), so faster
pre-labeling means less work per image rather than faster arithmetic.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.resnet import BasicBlock, Bottleneck

from ml_backend.detector.frcnn import FasterRCNNDetector


def fold_batchnorm(body: nn.Module) -> int:
    """Fold every conv -> BatchNorm pair of a torchvision ResNet body; returns pairs folded."""
    folded = int(_fold_pair(body, "conv1", "bn1"))  # the stem
    for block in body.modules():
        if isinstance(block, BasicBlock | Bottleneck):
            folded += sum(_fold_pair(block, f"conv{i}", f"bn{i}") for i in (1, 2, 3))
            if isinstance(block.downsample, nn.Sequential):
                folded += _fold_pair(block.downsample, "0", "1")
    return folded


def _fold_pair(parent: nn.Module, conv_name: str, bn_name: str) -> bool:
    conv, bn = getattr(parent, conv_name, None), getattr(parent, bn_name, None)
    if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
        return False
    setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
    setattr(parent, bn_name, nn.Identity())
    return True


def optimize_for_inference(detector: FasterRCNNDetector, *, channels_last: bool = True) -> int:
    """Prepare a loaded detector for batch pre-labeling (never for training: BN is gone)."""
    detector.model.eval()
    folded = 0
    if detector.config.norm == "batchnorm":
        folded = fold_batchnorm(detector.model.backbone.body)
    if channels_last:
        detector.model.to(memory_format=torch.channels_last)
    return folded


def limit_proposals(detector: FasterRCNNDetector, proposals: int) -> None:
    """Keep fewer RPN proposals at inference: less box-head work per image."""
    detector.model.rpn._pre_nms_top_n["testing"] = 2 * proposals
    detector.model.rpn._post_nms_top_n["testing"] = proposals


def native_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 / AMX); elsewhere bf16 autocast
    emulates it and runs about 2x slower than fp32, so `labeler models optimize` does not try it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
