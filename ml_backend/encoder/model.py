"""Crop-level lesion encoder: torchvision trunk -> GeM -> L2-normalised embedding, plus heads.

GeM pooling followed by L2 normalisation is Qi et al.'s retrieval embedding. The benign/malignant
head (Guo et al.) and the optional BI-RADS regression head (Shi et al.) read the same pooled
features, so the contrastive and classification losses shape one representation.

Input: float crops N x 3 x S x S in [0, 1] (crops.py). Norm layers are trainable BatchNorm (the
detector found frozen BN diverges from random init). Weights start from random init or a local
state-dict file; torchvision is always called with weights=None, so nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import densenet121, resnet18, resnet50

from core.errors import BadInputError
from ml_backend.encoder.config import Backbone, EncoderConfig

N_CLASSES = 2  # benign, malignant (index 1 is malignant)
_FEATURES: dict[Backbone, int] = {"resnet18": 512, "resnet50": 2048, "densenet121": 1024}
_HEAD_PREFIXES = ("fc.", "classifier.")  # ImageNet heads: not part of the trunk


class GeM(nn.Module):
    """Generalised-mean pooling: (mean x^p)^(1/p) over H x W; p = 1 is average pooling.

    p is clamped to >= 1 so the pool stays between average and max pooling, and inputs are
    clamped to eps because x^p needs x > 0 (trunk outputs are post-ReLU, so this only moves
    exact zeros). x is divided by its per-channel max m first, m * (mean (x/m)^p)^(1/p): the same
    value (and gradient: m cancels, so it is detached), but x^p cannot overflow, which it does
    in fp16 autocast already at x = 41, p = 3.
    """

    def __init__(self, p: float = 3.0, *, learn_p: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learn_p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.clamp(min=1.0)
        x = x.clamp(min=self.eps)
        m = x.detach().amax(dim=(-2, -1), keepdim=True)
        return (x / m).pow(p).mean(dim=(-2, -1)).pow(1.0 / p) * m[..., 0, 0]


class EncoderOutput(NamedTuple):
    """A NamedTuple (not a dataclass) so DDP, torch.export and jit see a plain tuple."""

    embedding: torch.Tensor  # N x D, unit L2 norm: cosine similarity is a dot product
    logits: torch.Tensor  # N x 2, benign/malignant
    birads: torch.Tensor | None  # N, BI-RADS score regression (None without the head)


def _torchvision_model(backbone: Backbone) -> nn.Module:
    builders = {"resnet18": resnet18, "resnet50": resnet50, "densenet121": densenet121}
    model: nn.Module = builders[backbone](weights=None)  # never a weights enum: no download
    return model


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """A local torchvision state dict; every trunk key must be present (the head may differ)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    trunk_state = {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIXES)}
    missing, _ = model.load_state_dict(trunk_state, strict=False)
    missing_trunk = [k for k in missing if not k.startswith(_HEAD_PREFIXES)]
    if missing_trunk:
        raise BadInputError(f"{path} lacks backbone keys, e.g. {missing_trunk[:3]}")


def build_trunk(config: EncoderConfig) -> tuple[nn.Module, int]:
    """The backbone without its pooling and ImageNet head, and its output channel count."""
    model = _torchvision_model(config.backbone)
    if config.backbone_weights:
        load_backbone_weights(model, config.backbone_weights)
    if config.backbone == "densenet121":
        # torchvision's DenseNet applies this ReLU in forward(), outside `features`
        trunk: nn.Module = nn.Sequential(model.get_submodule("features"), nn.ReLU())
    else:
        trunk = nn.Sequential(*list(model.children())[:-2])  # drop avgpool and fc
    return trunk, _FEATURES[config.backbone]


class LesionEncoder(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.trunk, features = build_trunk(config)
        self.pool = GeM(config.gem_p, learn_p=config.learn_p)
        dim = config.embedding_dim
        self.projection: nn.Module = nn.Linear(features, dim) if dim else nn.Identity()
        self.classifier = nn.Linear(features, N_CLASSES)
        self.birads_head = nn.Linear(features, 1) if config.birads_head else None

    def forward(self, crops: torch.Tensor) -> EncoderOutput:
        pooled = self.pool(self.trunk(crops))
        embedding = F.normalize(self.projection(pooled), dim=1)
        birads = self.birads_head(pooled).squeeze(1) if self.birads_head is not None else None
        return EncoderOutput(embedding, self.classifier(pooled), birads)
