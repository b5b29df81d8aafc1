"""Detector configs: small TOML files in configs/, validated here. The label space is part of it."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.birads import FIVE_WAY_SPACE, FULL_SPACE, NO_4_SPACE, Birads
from core.errors import BadInputError

CONFIG_DIR = Path(__file__).with_name("configs")
SPACES: dict[str, tuple[Birads, ...]] = {
    "full": FULL_SPACE,
    "five-way": FIVE_WAY_SPACE,
    "no-4": NO_4_SPACE,
}


class TrainConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(4, ge=1)
    lr: float = Field(0.01, gt=0)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = Field(50, ge=0)
    grad_clip: float = Field(10.0, gt=0)
    seed: int = 0
    # data.augmentations: "standard" = left-right flips, rotations, brightness; "paper" adds
    # the up-down flips paper 001 lists; "none" for the ablation (bench/prelabel_quality.py).
    augment: Literal["none", "standard", "paper"] = "standard"


class DetectorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    backbone: Literal["resnet18", "resnet34", "resnet50", "resnet101"]
    image_size: int = Field(ge=64)
    label_space: Literal["full", "five-way", "no-4"]
    norm: Literal["batchnorm", "groupnorm"] = "batchnorm"
    trainable_layers: int = Field(5, ge=0, le=5)
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    box_detections_per_img: int = 10
    box_score_thresh: float = 0.05
    backbone_weights: str | None = None  # a local state-dict file; nothing is downloaded
    train: TrainConfig = TrainConfig()

    @property
    def categories(self) -> tuple[Birads, ...]:
        """The image-level label space, BI-RADS 1 included."""
        return SPACES[self.label_space]

    @property
    def box_categories(self) -> tuple[Birads, ...]:
        """Classes the detector draws boxes for: BI-RADS 1 (no lesion) is the absence of a box."""
        return tuple(c for c in self.categories if c is not Birads.B1)


class UnknownConfigError(BadInputError):
    """No preset of that name and no TOML file at that path."""


def load_config(name_or_path: str) -> DetectorConfig:
    """A preset name from configs/ ("small", "r101-800") or a path to a TOML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
        raise UnknownConfigError(f"no detector config {name_or_path!r} (presets: {known})")
    with path.open("rb") as fh:
        return DetectorConfig.model_validate(tomllib.load(fh))
