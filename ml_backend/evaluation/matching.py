"""One-to-one box matching, shared by the detection metrics and the readers' consensus.

IoU comes from `torchvision.ops.box_iou`; the assignment from `scipy.optimize.linear_sum_assignment`
(Hungarian), which finds the largest set of pairs that clear the threshold, then the one with the
most total overlap among those. A greedy pass can miss pairs: it lets one box take a lesion that
another box needed, where a full matching existed.

torch and torchvision load on the first IoU, not with this module: `labeler sync` imports it for
the readers' consensus and, when nothing new has come in, never needs them (about 3 CPU-s and
300 MB per start, on a timer every 10 minutes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from ml_backend.detector.interface import Box


def iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> npt.NDArray[np.float64]:
    """Pairwise IoU of xyxy boxes, shape (len(a), len(b)); 0 where both boxes have no area."""
    import torch
    from torchvision.ops import box_iou

    boxes_a = torch.as_tensor(a, dtype=torch.float64).reshape(-1, 4)
    boxes_b = torch.as_tensor(b, dtype=torch.float64).reshape(-1, 4)
    iou: npt.NDArray[np.float64] = np.nan_to_num(box_iou(boxes_a, boxes_b).numpy(), nan=0.0)
    return iou


def match_boxes(
    a: Sequence[Box],
    b: Sequence[Box],
    *,
    iou_threshold: float,
    compatible: Callable[[int, int], bool] | None = None,
) -> list[tuple[int, int]]:
    """Pairs (i, j) of a[i] with b[j], each box in at most one pair, every pair at IoU >=
    `iou_threshold` (and `compatible(i, j)` when given): as many pairs as possible."""
    if not a or not b:
        return []
    iou = iou_matrix(a, b)
    allowed = iou >= iou_threshold
    if compatible is not None:
        rows, cols = np.nonzero(allowed)
        for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
            allowed[i, j] = compatible(i, j)
    # Each allowed pair is worth more than any total of IoUs, so the count of pairs comes first.
    weight = np.where(allowed, iou + min(len(a), len(b)) + 1.0, 0.0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if allowed[i, j]]
