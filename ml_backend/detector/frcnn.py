"""The Detector on torchvision's Faster R-CNN with a ResNet FPN backbone (the paper's R101 at 800).

Images are resized to image_size x image_size (as in the paper) and boxes mapped back to the
original pixels. Weights start from random init or a local file; nothing is downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from core.birads import Birads
from core.errors import BadInputError
from core.settings import Precision
from ml_backend.detector import sampling
from ml_backend.detector.config import DetectorConfig
from ml_backend.detector.interface import Detection, ImagePrediction, RGBImage
from ml_backend.detector.roi_heads import ProbRoIHeads

WEIGHTS = "weights.pt"
CONFIG = "config.json"


def _norm_layer(config: DetectorConfig) -> type[nn.Module] | object:
    if config.norm == "groupnorm":
        return lambda channels: nn.GroupNorm(32, channels)
    return nn.BatchNorm2d  # trainable: FrozenBatchNorm from random init diverges to NaN


def build_model(config: DetectorConfig) -> FasterRCNN:
    backbone = resnet_fpn_backbone(
        backbone_name=config.backbone,
        weights=None,
        norm_layer=_norm_layer(config),
        trainable_layers=config.trainable_layers,
    )
    if config.backbone_weights:
        state = torch.load(config.backbone_weights, map_location="cpu", weights_only=True)
        missing, _ = backbone.body.load_state_dict(state, strict=False)
        if missing:
            raise BadInputError(
                f"{config.backbone_weights} lacks backbone keys, e.g. {missing[:3]}"
            )
    model = FasterRCNN(
        backbone,
        num_classes=len(config.box_categories) + 1,
        min_size=config.image_size,
        max_size=config.image_size,
        rpn_pre_nms_top_n_test=config.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=config.rpn_post_nms_top_n_test,
        rpn_batch_size_per_image=config.rpn_batch_size_per_image,
        box_batch_size_per_image=config.box_batch_size_per_image,
        box_detections_per_img=config.box_detections_per_img,
        box_score_thresh=config.box_score_thresh,
    )
    model.roi_heads = ProbRoIHeads.like(model.roi_heads)  # same modules, probabilities out
    sampling.install(model)  # each image's own draws, whatever process or batch it is in
    return model


def to_input(image: RGBImage, size: int) -> torch.Tensor:
    """8-bit HxW or HxWx3 -> float CHW in [0, 1], resized to size x size."""
    arr = np.array(image, copy=True)  # torch needs a writable array
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    tensor = torch.from_numpy(np.ascontiguousarray(arr[:, :, :3])).permute(2, 0, 1).float() / 255
    return F.interpolate(tensor[None], size=(size, size), mode="bilinear", antialias=True)[0]


class FasterRCNNDetector:
    def __init__(
        self, config: DetectorConfig, model: FasterRCNN | None = None, device: str = "cpu"
    ) -> None:
        self.config = config
        self.device = torch.device(device)
        self.model = (model or build_model(config)).to(self.device)
        self.bf16 = False  # bf16 autocast at inference (see detector.precision)
        self.precision: Precision = "fp32"  # the path in effect (detector.precision)

    @property
    def label_space(self) -> tuple[Birads, ...]:
        return self.config.categories

    @torch.inference_mode()
    def predict(self, images: Sequence[RGBImage]) -> list[ImagePrediction]:
        self.model.eval()
        size = self.config.image_size
        batch = [to_input(img, size).to(self.device) for img in images]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            outputs = self.model(batch) if batch else []
        return [self._decode(out, img.shape[:2]) for out, img in zip(outputs, images, strict=True)]

    def _decode(self, out: dict[str, torch.Tensor], hw: tuple[int, ...]) -> ImagePrediction:
        scale = torch.tensor([hw[1], hw[0], hw[1], hw[0]]) / self.config.image_size
        boxes = (out["boxes"].float().cpu() * scale).tolist()
        space = self.config.box_categories
        detections = tuple(
            Detection(
                xyxy=(b[0], b[1], b[2], b[3]),
                category=space[int(label) - 1],
                score=float(score),
                probs={c: float(p) for c, p in zip(space, probs.tolist(), strict=True)},
            )
            for b, label, score, probs in zip(
                boxes,
                out["labels"].tolist(),
                out["scores"].float().tolist(),
                out["probs"].float().cpu(),
                strict=True,
            )
        )
        uncertainty = 1.0 - detections[0].score if detections else 1.0
        return ImagePrediction(detections=detections, uncertainty=uncertainty)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / WEIGHTS).open("wb") as fh:  # a full disk raises OSError, not torch text
            torch.save(self.model.state_dict(), fh)
        (folder / CONFIG).write_text(self.config.model_dump_json(indent=2))

    @classmethod
    def load(cls, folder: Path, device: str = "cpu") -> Self:
        config = DetectorConfig.model_validate(json.loads((folder / CONFIG).read_text()))
        config = config.model_copy(update={"backbone_weights": None})  # the full weights follow
        detector = cls(config, device=device)
        state = torch.load(folder / WEIGHTS, map_location=detector.device, weights_only=True)
        detector.model.load_state_dict(state)
        return detector
