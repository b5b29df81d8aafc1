"""Consensus and reader agreement on constructed reviews, with hand-computed expectations."""

from __future__ import annotations

import pytest

from core.birads import Birads
from db.agreement import fleiss, pairwise_cohen
from db.models import LabelStatus, Verdict
from db.schemas import BoxRecord
from labeler.consensus import ConsensusRule, ReaderReview, boxes_agree, decide

PRE = (BoxRecord(xyxy=(10, 10, 50, 50), birads=Birads.B4),)


def _accept(
    reader: str, boxes: tuple[BoxRecord, ...] = PRE, birads: Birads = Birads.B4
) -> ReaderReview:
    return ReaderReview(reader, Verdict.ACCEPT, boxes, birads)


def test_three_readers_agreeing_accept_the_prelabel() -> None:
    d = decide(PRE, Birads.B4, [_accept("a"), _accept("b"), _accept("c")])
    assert d.status is LabelStatus.ACCEPTED and d.boxes == PRE and d.birads is Birads.B4


def test_any_reject_or_correction_rejects_and_names_the_reader() -> None:
    reject = ReaderReview("b", Verdict.REJECT, (), None)
    d = decide(PRE, Birads.B4, [_accept("a"), reject, _accept("c")])
    assert d.status is LabelStatus.REJECTED and "b" in d.reason and "a" not in d.reason
    moved = (BoxRecord(xyxy=(40, 40, 90, 90), birads=Birads.B4),)  # IoU with PRE < 0.5
    assert decide(PRE, Birads.B4, [_accept("a", moved)]).status is LabelStatus.REJECTED
    other_class = (BoxRecord(xyxy=(10, 10, 50, 50), birads=Birads.B3),)
    assert decide(PRE, Birads.B4, [_accept("a", other_class)]).status is LabelStatus.REJECTED
    assert decide(PRE, Birads.B4, [_accept("a", birads=Birads.B5)]).status is LabelStatus.REJECTED


def test_short_of_a_quorum_is_pending_and_quorum_and_iou_are_configurable() -> None:
    assert decide(PRE, Birads.B4, [_accept("a"), _accept("b")]).status is LabelStatus.PENDING
    two = ConsensusRule(quorum=2)
    assert decide(PRE, Birads.B4, [_accept("a"), _accept("b")], two).status is LabelStatus.ACCEPTED
    nudged = (BoxRecord(xyxy=(14, 14, 54, 54), birads=Birads.B4),)  # IoU = 1296/1904 = 0.68
    lenient, strict = ConsensusRule(quorum=1, iou=0.5), ConsensusRule(quorum=1, iou=0.7)
    assert decide(PRE, Birads.B4, [_accept("a", nudged)], lenient).status is LabelStatus.ACCEPTED
    assert decide(PRE, Birads.B4, [_accept("a", nudged)], strict).status is LabelStatus.REJECTED


def test_a_normal_image_is_accepted_with_no_boxes() -> None:
    readers = [_accept(r, (), Birads.B1) for r in "abc"]
    assert decide((), Birads.B1, readers).status is LabelStatus.ACCEPTED


def test_boxes_match_one_to_one() -> None:
    two = (
        BoxRecord(xyxy=(0, 0, 10, 10), birads=Birads.B2),
        BoxRecord(xyxy=(20, 20, 30, 30), birads=Birads.B2),
    )
    doubled = (two[0], BoxRecord(xyxy=(0, 0, 10, 11), birads=Birads.B2))  # both on the first lesion
    assert boxes_agree(two, tuple(reversed(two)), iou=0.5)
    assert not boxes_agree(two, doubled, iou=0.5)
    assert not boxes_agree(two, two[:1], iou=0.5)


def test_fleiss_kappa_equals_the_hand_computed_value() -> None:
    # 4 images x 3 readers over {2, 3}: P_i = 1, 1, 1/3, 1/3 -> mean 2/3; p_2 = p_3 = 1/2 -> Pe 1/2
    # kappa = (2/3 - 1/2) / (1 - 1/2) = 1/3
    b2, b3 = Birads.B2, Birads.B3
    ratings = [[b2, b2, b2], [b3, b3, b3], [b2, b2, b3], [b3, b3, b2]]
    assert fleiss(ratings) == pytest.approx(1 / 3)
    assert fleiss([[b2, b2, b2], [b3, b3, b3]]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same number of readers"):
        fleiss([[b2, b2], [b2, b2, b2]])


def test_pairwise_cohen_kappa_on_shared_images() -> None:
    b2, b3 = Birads.B2, Birads.B3
    a = {1: b2, 2: b3, 3: b2, 4: b3}
    # a vs c: observed agreement 2/4, chance 1/2 -> kappa 0
    c = {1: b2, 2: b3, 3: b3, 4: b2}
    kappas = pairwise_cohen({"a": a, "b": dict(a), "c": c, "d": {9: b2}})
    assert kappas["a|b"] == pytest.approx(1.0)
    assert kappas["a|c"] == pytest.approx(0.0)
    assert kappas["a|d"] is None  # no image read by both


def test_boxes_agree_when_any_one_to_one_assignment_exists() -> None:
    # a0 overlaps b0 most (IoU .90) but also b1 (.54); a1 overlaps only b0 (.60, b1 .25). Greedy
    # gave b0 to a0 and found nothing for a1; the assignment pairs a0-b1 and a1-b0.
    def box(x0: float, x1: float) -> BoxRecord:
        return BoxRecord(xyxy=(x0, 0, x1, 10), birads=Birads.B3)

    reader = (box(0, 10), box(3, 13))
    prelabel = (box(0.5, 10.5), box(-3, 7))
    assert boxes_agree(reader, prelabel, iou=0.5)
    assert not boxes_agree(reader, prelabel, iou=0.55)  # a0-b1 no longer counts


def test_a_plain_4_prelabel_read_back_from_label_studio_is_consensus_bi_rads_4() -> None:
    """Plain 4 (a five-way detector's category) is a label readers see; accepting it keeps 4,
    splitting it into 4A is a correction."""
    from ml_backend.studio.format import BOXES, image_birads, parse_annotation

    region = {
        "from_name": BOXES,
        "value": {"x": 10, "y": 10, "width": 40, "height": 40, "rectanglelabels": ["BI-RADS 4"]},
    }
    read = parse_annotation([region], width=100, height=100)
    assert read.image_birads is Birads.B4
    pre = (BoxRecord(xyxy=(10, 10, 50, 50), birads=Birads.B4),)
    assert image_birads(pre) is Birads.B4
    agree = [ReaderReview(r, Verdict.ACCEPT, read.boxes, read.image_birads) for r in "abc"]
    d = decide(pre, Birads.B4, agree)
    assert d.status is LabelStatus.ACCEPTED and d.birads is Birads.B4
    split = (BoxRecord(xyxy=(10, 10, 50, 50), birads=Birads.B4A),)
    assert decide(pre, Birads.B4, [_accept("a", split, Birads.B4A)]).status is (
        LabelStatus.REJECTED
    )
