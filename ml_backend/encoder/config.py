"""Encoder settings, validated; experiments become small TOML files like the detector's presets."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Backbone = Literal["resnet18", "resnet50", "densenet121"]


class EncoderConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    backbone: Backbone = "resnet18"
    # None: the embedding is the L2-normalised GeM vector itself (Qi et al.); an int adds a
    # linear projection to that many dimensions before the normalisation.
    embedding_dim: int | None = Field(None, ge=2)
    gem_p: float = Field(3.0, ge=1.0)  # 1 = average pooling; large p tends to max pooling
    learn_p: bool = True
    birads_head: bool = False  # Shi et al.'s auxiliary BI-RADS regression
    backbone_weights: str | None = None  # a local torchvision state dict; nothing is downloaded
    crop_size: int = Field(224, ge=32)
    crop_margin: float = Field(0.1, ge=0.0)  # fraction of the box's longer side, on each side
