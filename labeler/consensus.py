"""Three-reader consensus on a pre-label, as pure functions (no database, no Label Studio).

An image is accepted when a quorum of readers (3) accepts the pre-label *and* each accepting
reader's boxes agree with it: same BI-RADS, every box matched one-to-one at IoU >= 0.5. A reader
who rejects, or corrects (changed category or moved boxes), sends the image back to the pool:
rejected. Anything short of a quorum is pending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.birads import Birads
from db.models import LabelStatus, Verdict
from db.schemas import BoxRecord
from ml_backend.evaluation.matching import match_boxes


@dataclass(frozen=True)
class ReaderReview:
    reader: str
    verdict: Verdict
    boxes: tuple[BoxRecord, ...]
    image_birads: Birads | None


@dataclass(frozen=True)
class ConsensusRule:
    quorum: int = 3
    iou: float = 0.5


@dataclass(frozen=True)
class Decision:
    status: LabelStatus
    boxes: tuple[BoxRecord, ...]
    birads: Birads | None
    reason: str


def boxes_agree(a: Sequence[BoxRecord], b: Sequence[BoxRecord], *, iou: float) -> bool:
    """Same number of boxes, matched one-to-one with the same category at IoU >= iou."""
    if len(a) != len(b):
        return False
    if not a:
        return True
    pairs = match_boxes(
        [x.xyxy for x in a],
        [y.xyxy for y in b],
        iou_threshold=iou,
        compatible=lambda i, j: a[i].birads == b[j].birads,
    )
    return len(pairs) == len(a)


def decide(
    prelabel: Sequence[BoxRecord],
    prelabel_birads: Birads,
    reviews: Sequence[ReaderReview],
    rule: ConsensusRule = ConsensusRule(),
) -> Decision:
    against = [r.reader for r in reviews if not _agrees(r, prelabel, prelabel_birads, rule)]
    if against:
        return Decision(LabelStatus.REJECTED, (), None, f"not confirmed by {', '.join(against)}")
    if len({r.reader for r in reviews}) < rule.quorum:
        return Decision(
            LabelStatus.PENDING, (), None, f"{len(reviews)} of {rule.quorum} readers so far"
        )
    return Decision(LabelStatus.ACCEPTED, tuple(prelabel), prelabel_birads, "all readers agree")


def _agrees(
    review: ReaderReview, prelabel: Sequence[BoxRecord], birads: Birads, rule: ConsensusRule
) -> bool:
    if review.verdict is not Verdict.ACCEPT:
        return False
    if review.image_birads is not None and review.image_birads != birads:
        return False
    return boxes_agree(review.boxes, prelabel, iou=rule.iou)
