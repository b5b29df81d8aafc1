"""Label Studio JSON: the label config, prediction regions and annotation parsing."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from core.birads import Birads, Pathology
from db.models import Verdict
from db.schemas import BoxRecord
from ml_backend.prelabel.category import ShownBoxes
from ml_backend.studio.format import (
    BOXES,
    REVIEW,
    StudioFormatError,
    label_config,
    parse_annotation,
    prediction_errors,
    prediction_payload,
)

W, H = 640, 480


def _box(x0: float, birads: Birads, score: float, malignancy: float | None = None) -> BoxRecord:
    return BoxRecord(
        xyxy=(x0, 100.0, x0 + 120.0, 220.0), birads=birads, score=score, malignancy=malignancy
    )


def test_label_config_offers_every_category_review_and_pathology() -> None:
    root = ET.fromstring(label_config())
    labels = [el.get("value") for el in root.iter("Label")]
    assert labels == [f"BI-RADS {c}" for c in ("1", "2", "3", "4", "4A", "4B", "4C", "5")]
    rect = root.find(".//RectangleLabels")
    assert rect is not None and rect.get("canRotate") == "false"
    choices = {
        c.get("name"): [x.get("value") for x in c.iter("Choice")] for c in root.iter("Choices")
    }
    assert choices[REVIEW] == ["Pre-label correct", "Corrected", "Reject"]
    assert choices["pathology"] == ["benign", "malignant", "normal"]


def test_regions_keep_the_best_boxes_above_the_floor_with_scores() -> None:
    boxes = [
        _box(10, Birads.B3, 0.2, 0.01),
        _box(200, Birads.B5, 0.9, 0.63),
        _box(400, Birads.B2, 0.01, 0.02),
    ]
    payload = prediction_payload(
        boxes, width=W, height=H, model_version="v1", rule=ShownBoxes(0.05, 3)
    ).body()
    regions = payload["result"]
    assert [r["value"]["rectanglelabels"] for r in regions] == [["BI-RADS 5"], ["BI-RADS 3"]]
    assert [r["score"] for r in regions] == [0.9, 0.2]
    first = regions[0]
    assert first["original_width"] == W and first["original_height"] == H
    assert first["value"]["rotation"] == 0
    assert first["value"]["x"] == pytest.approx(100 * 200 / W)
    # the score is the image's calibrated P(malignant) (the top shown box's), not a box score
    assert payload["model_version"] == "v1" and payload["score"] == 0.63
    assert payload["malignancy"] == {"image": 0.63, "boxes": [0.63, 0.01]}  # per shown region


def test_boxes_without_a_grader_probability_show_no_score() -> None:
    """Rows stored before the grader's probability existed never show a detection score as
    if it were P(malignant)."""
    payload = prediction_payload(
        [_box(10, Birads.B3, 0.8)], width=W, height=H, model_version="v", rule=ShownBoxes()
    ).body()
    assert len(payload["result"]) == 1 and "score" not in payload and "malignancy" not in payload


def test_max_boxes_caps_the_regions() -> None:
    boxes = [_box(10 * i, Birads.B2, 0.5 + i / 100) for i in range(5)]
    assert len(ShownBoxes(0.05, 2).pick(boxes)) == 2


def test_a_prediction_read_back_as_an_annotation_gives_the_same_boxes() -> None:
    boxes = [_box(50, Birads.B4B, 0.7)]
    regions = prediction_payload(
        boxes, width=W, height=H, model_version="v", rule=ShownBoxes()
    ).body()["result"]
    choice = {"from_name": REVIEW, "value": {"choices": ["Pre-label correct"]}}
    patho = {"from_name": "pathology", "value": {"choices": ["malignant"]}}
    parsed = parse_annotation([*regions, choice, patho], width=W, height=H)
    assert parsed.verdict is Verdict.ACCEPT and parsed.pathology is Pathology.MALIGNANT
    assert parsed.image_birads is Birads.B4B
    assert parsed.boxes[0].xyxy == pytest.approx(boxes[0].xyxy)


def test_no_boxes_reads_as_birads_1_and_no_choice_as_none() -> None:
    parsed = parse_annotation([], width=W, height=H)
    assert parsed.image_birads is Birads.B1 and parsed.verdict is None


@pytest.mark.parametrize(
    "region",
    [
        {
            "from_name": BOXES,
            "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["BI-RADS 7"]},
        },
        {"from_name": BOXES, "value": {"x": 1, "rectanglelabels": ["BI-RADS 2"]}},
        {
            "from_name": BOXES,
            "value": {
                "x": 1,
                "y": 1,
                "width": 5,
                "height": 5,
                "rotation": 30,
                "rectanglelabels": ["BI-RADS 2"],
            },
        },
        {"from_name": REVIEW, "value": {"choices": ["Maybe"]}},
    ],
)
def test_bad_regions_are_refused_with_a_clear_error(region: dict[str, object]) -> None:
    with pytest.raises(StudioFormatError):
        parse_annotation([region], width=W, height=H)


@pytest.mark.parametrize("category", list(Birads))
def test_every_category_a_prelabel_can_carry_is_valid_in_the_label_config(
    category: Birads,
) -> None:
    """Plain 4 included: a five-way detector predicts it, and Label Studio would drop it."""
    payload = prediction_payload(
        [_box(10, category, 0.7)], width=W, height=H, model_version="v", rule=ShownBoxes()
    )
    assert prediction_errors(payload) == []
    assert payload.body()["result"][0]["value"]["rectanglelabels"] == [f"BI-RADS {category}"]


def test_no_shown_box_means_no_score() -> None:
    payload = prediction_payload(
        [_box(10, Birads.B5, 0.01)], width=W, height=H, model_version="v", rule=ShownBoxes()
    ).body()
    assert payload["result"] == [] and "score" not in payload
