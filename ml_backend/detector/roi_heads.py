"""RoIHeads that return each detection's class-probability vector and suppress across classes.

torchvision returns only the winning class score per box and runs NMS per class, so one lesion
can come back as two boxes with different BI-RADS. A pre-label wants one box per lesion with the
full probability vector (for the 4A/4B split and uncertainty), so at inference this subclass
decodes the boxes itself and returns `probs` in each detection dict. Training is torchvision's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import boxes as box_ops

Detections = list[dict[str, Tensor]]


class ProbRoIHeads(RoIHeads):  # type: ignore[misc]
    @classmethod
    def like(cls, heads: RoIHeads) -> ProbRoIHeads:
        """The same modules (so the same weights and state-dict keys) and the same settings as
        the box-only `heads` FasterRCNN built."""
        if heads.has_mask() or heads.has_keypoint():
            raise ValueError("ProbRoIHeads handles boxes only")
        return cls(
            heads.box_roi_pool,
            heads.box_head,
            heads.box_predictor,
            fg_iou_thresh=heads.proposal_matcher.high_threshold,
            bg_iou_thresh=heads.proposal_matcher.low_threshold,
            batch_size_per_image=heads.fg_bg_sampler.batch_size_per_image,
            positive_fraction=heads.fg_bg_sampler.positive_fraction,
            bbox_reg_weights=heads.box_coder.weights,
            score_thresh=heads.score_thresh,
            nms_thresh=heads.nms_thresh,
            detections_per_img=heads.detections_per_img,
        )

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[Detections, dict[str, Tensor]]:
        if self.training:
            result: tuple[Detections, dict[str, Tensor]] = super().forward(
                features, proposals, image_shapes, targets
            )
            return result
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        return self.detections(class_logits, box_regression, proposals, image_shapes), {}

    def detections(
        self,
        class_logits: Tensor,
        box_regression: Tensor,
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> Detections:
        """Per image: boxes, labels, scores and the foreground class probabilities (N x C)."""
        num_classes = class_logits.shape[-1]
        per_image = [p.shape[0] for p in proposals]
        decoded: Tensor = self.box_coder.decode(box_regression, proposals)
        pred_boxes = torch.split(decoded, per_image, dim=0)
        pred_scores = torch.split(F.softmax(class_logits, -1), per_image, dim=0)
        out: Detections = []
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
            out.append(
                {
                    "boxes": boxes[keep],
                    "labels": labels[keep],
                    "scores": scores[keep],
                    "probs": probs[rows[keep], 1:],
                }
            )
        return out
