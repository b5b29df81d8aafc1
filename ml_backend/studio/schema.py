"""What we send Label Studio, typed: prediction regions, predictions and tasks.

The control names of our label config live here too, so every other module (the config XML,
annotation parsing, the similar-lesions text) names them from one place. Models are frozen and
refuse unknown fields; `body()` is the body Label Studio receives. A field listed in a model's
OMIT_IF_NONE is left out when unset (Label Studio reads a missing `score` differently from a
null one); every other None stays a JSON null.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    model_serializer,
)

IMAGE = "image"
BOXES = "lesion"
REVIEW = "review"
PATHOLOGY = "pathology"
SIMILAR = "similar"


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None or k not in self.OMIT_IF_NONE}

    def body(self) -> dict[str, Any]:
        """The JSON body Label Studio receives."""
        return self.model_dump(mode="json")


class RectangleValue(_Out):
    """A box in percent of the original image (ml_backend/studio/boxes.py converts)."""

    x: float
    y: float
    width: float
    height: float
    rotation: float = 0.0
    rectanglelabels: list[str]


class RectangleRegion(_Out):
    """One pre-labeled lesion box, with the detector's score for it."""

    OMIT_IF_NONE = frozenset({"score"})
    id: str
    from_name: Literal["lesion"] = "lesion"
    to_name: Literal["image"] = "image"
    type: Literal["rectanglelabels"] = "rectanglelabels"
    original_width: int
    original_height: int
    image_rotation: int = 0
    value: RectangleValue
    score: float | None = None


class SimilarMatch(_Out):
    """One similar confirmed lesion: public ids only (never the patient or lesion key)."""

    rank: int
    image_id: int
    dataset: str
    source_id: str | None
    birads: str | None
    pathology: str | None
    distance: float
    same_lesion: bool
    label: str


class SimilarPayload(_Out):
    encoder_version: str
    matches: list[SimilarMatch]


class MalignancyPayload(_Out):
    """The grader's P(malignant) for API callers: the image's (Label Studio shows it as the
    prediction's `score`) and each region's of `result`, in its order."""

    image: float | None
    boxes: list[float | None]


class TextValue(_Out):
    text: list[str]


class TextAreaRegion(_Out):
    """The read-only "similar confirmed lesions" text, its matches in `meta` for the exports."""

    id: str = "similar"
    from_name: Literal["similar"] = "similar"
    to_name: Literal["image"] = "image"
    type: Literal["textarea"] = "textarea"
    readonly: bool = True
    value: TextValue
    meta: SimilarPayload


Region = Annotated[RectangleRegion | TextAreaRegion, Field(discriminator="type")]


class Prediction(_Out):
    """One prediction as /predict returns it and as the bulk push sends it.

    Label Studio keeps `result`, `score` and `model_version`; `similar` and `malignancy` are
    for API callers of /predict.
    """

    OMIT_IF_NONE = frozenset({"similar", "score", "malignancy"})
    result: list[Region]
    score: float | None
    model_version: str
    similar: SimilarPayload | None = None
    malignancy: MalignancyPayload | None = None

    def with_region(self, region: TextAreaRegion) -> Prediction:
        return self.model_copy(update={"result": [*self.result, region]})

    def with_similar(self, similar: SimilarPayload) -> Prediction:
        return self.model_copy(update={"similar": similar})

    def for_task(self, task_id: int) -> PredictionImport:
        return PredictionImport(
            task=task_id,
            result=self.result,
            score=self.score,
            model_version=self.model_version,
            similar=self.similar,
        )


class PredictionImport(Prediction):
    """A prediction for an existing task (the bulk predictions import)."""

    task: StrictInt


class TaskData(_Out):
    """Our fields of a task: the image Label Studio shows and the ids the sync reads back."""

    image: str
    image_id: int
    round: int
    model_version: str
    queue_rank: int
    """Active-learning queue position (0 first); the project's default view sorts by it."""


class NewTask(_Out):
    """A task imported with its prediction, so readers see the pre-label at once."""

    data: TaskData
    predictions: list[Prediction]


class PredictResponse(_Out):
    """The body of /predict."""

    results: list[Prediction]
    model_version: str
