"""The typed Label Studio adapter: what we send validates against Label Studio's own reading
of our label config (label_studio_sdk's LabelInterface), and our tasks read back typed."""

from __future__ import annotations

import pytest
from label_studio_sdk.core.pydantic_utilities import parse_obj_as
from label_studio_sdk.types import RoleBasedTask
from pydantic import ValidationError

from core.birads import Birads, Pathology
from db.lesion_boxes import BoxOrigin
from db.schemas import BoxRecord
from ml_backend.encoder.index import IndexRow, Match
from ml_backend.prelabel.category import ShownBoxes
from ml_backend.studio.events import listed_task
from ml_backend.studio.format import (
    label_config,
    label_interface,
    prediction_errors,
    prediction_payload,
)
from ml_backend.studio.schema import (
    NewTask,
    Prediction,
    PredictResponse,
    RectangleRegion,
    TaskData,
)
from ml_backend.studio.similar import similar_payload, similar_region

W, H = 640, 480
ROW = IndexRow(12, (0.0, 0.0, 5.0, 5.0), BoxOrigin.REFERENCE, Birads.B4, Pathology.BENIGN)
MATCH = Match(1, ROW, 0.2, False)


def _prediction() -> Prediction:
    boxes = [
        BoxRecord(xyxy=(10.0, 20.0, 200.0, 220.0), birads=Birads.B4A, score=0.81234),
        BoxRecord(xyxy=(300.0, 20.0, 400.0, 120.0), birads=Birads.B2, score=None),
    ]
    return prediction_payload(
        boxes, width=W, height=H, model_version="v1", rule=ShownBoxes(0.0, 3)
    ).with_region(similar_region([MATCH], encoder_version="e1"))


def test_the_label_config_is_one_label_studio_accepts() -> None:
    lesion = label_interface().get_control("lesion")  # type: ignore[no-untyped-call]
    assert lesion.labels == [f"BI-RADS {c}" for c in ("1", "2", "3", "4", "4A", "4B", "4C", "5")]
    assert label_interface(label_config()).is_valid
    assert not label_interface('<View><Choices name="a" toName="nowhere"/></View>').is_valid


def test_a_prediction_validates_against_label_studios_reading_of_the_config() -> None:
    assert prediction_errors(_prediction()) == []
    old = label_config().replace('name="similar"', 'name="notes"')  # before the TextArea
    assert prediction_errors(_prediction(), old) != []  # why declares_similar exists
    with pytest.raises(ValidationError):
        RectangleRegion.model_validate({**_prediction().body()["result"][0], "from_name": "nodule"})


def test_the_json_leaves_out_only_unset_scores_and_similar() -> None:
    prediction = _prediction()
    body = prediction.body()
    rect, unscored, text = body["result"]
    assert rect["score"] == 0.8123 and "score" not in unscored
    assert rect["value"]["rectanglelabels"] == ["BI-RADS 4A"] and rect["original_width"] == W
    assert text["meta"]["matches"][0]["source_id"] is None  # a null stays a null
    assert "similar" not in body
    with_similar = prediction.with_similar(similar_payload([MATCH], encoder_version="e1"))
    assert with_similar.body()["similar"]["encoder_version"] == "e1"
    assert prediction.for_task(7).body() == {**body, "task": 7}
    response = PredictResponse(results=[prediction], model_version="v1").body()
    assert response == {"results": [body], "model_version": "v1"}


def test_a_pushed_task_reads_back_as_ours() -> None:
    prediction = _prediction()
    data = TaskData(image="/data/x.png", image_id=3, round=2, model_version="v1", queue_rank=0)
    task = NewTask(data=data, predictions=[prediction]).body()
    listed = listed_task({"id": 41, **task})
    assert listed is not None and (listed.id, listed.data.image_id, listed.data.round) == (41, 3, 2)
    assert listed.data.model_version == "v1"
    sdk: object = parse_obj_as(RoleBasedTask, {"id": 41, **task})  # type: ignore[arg-type]
    assert listed_task(sdk) == listed


@pytest.mark.parametrize(
    "item",
    [
        {"id": 1, "data": {"image": "x.png"}},  # someone else's task
        {"id": 1, "data": {"image_id": "3"}},
        {"id": None, "data": {"image_id": 3}},
        {"id": 1, "data": {"image_id": 3, "round": 0}},
        "not a task",
    ],
)
def test_tasks_that_are_not_ours_read_as_none(item: object) -> None:
    assert listed_task(item) is None
