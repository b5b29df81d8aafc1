"""RoIHeads that keep each detection's class-probability vector and suppress across classes.

torchvision returns only the winning class score per box and runs NMS per class, so one lesion
can come back as two boxes with different BI-RADS. A pre-label wants one box per lesion with the
full probability vector (for the 4A/4B split and uncertainty), so this subclass changes
`postprocess_detections` and adds `probs` to each result.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import boxes as box_ops


class ProbRoIHeads(RoIHeads):  # type: ignore[misc]
    _probs: list[Tensor]

    def forward(
        self, *args: Any, **kwargs: Any
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        result, losses = super().forward(*args, **kwargs)
        if not self.training:
            for item, probs in zip(result, self._probs, strict=True):
                item["probs"] = probs
        return result, losses

    def postprocess_detections(
        self,
        class_logits: Tensor,
        box_regression: Tensor,
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        num_classes = class_logits.shape[-1]
        per_image = [p.shape[0] for p in proposals]
        decoded: Tensor = self.box_coder.decode(box_regression, proposals)
        pred_boxes = torch.split(decoded, per_image, dim=0)
        pred_scores = torch.split(F.softmax(class_logits, -1), per_image, dim=0)
        out_boxes, out_scores, out_labels, out_probs = [], [], [], []
        for boxes, probs, shape in zip(pred_boxes, pred_scores, image_shapes, strict=True):
            boxes = box_ops.clip_boxes_to_image(boxes, shape)[:, 1:].reshape(-1, 4)
            scores = probs[:, 1:].reshape(-1)
            labels = torch.arange(1, num_classes, device=probs.device).repeat(probs.shape[0])
            rows = torch.arange(probs.shape[0], device=probs.device).repeat_interleave(
                num_classes - 1
            )
            keep = torch.where(scores > self.score_thresh)[0]
            keep = keep[box_ops.remove_small_boxes(boxes[keep], min_size=1e-2)]
            keep = keep[box_ops.nms(boxes[keep], scores[keep], self.nms_thresh)]  # across classes
            keep = keep[: self.detections_per_img]
            out_boxes.append(boxes[keep])
            out_scores.append(scores[keep])
            out_labels.append(labels[keep])
            out_probs.append(probs[rows[keep], 1:])
        self._probs = out_probs
        return out_boxes, out_scores, out_labels
