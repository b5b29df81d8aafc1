"""Typed values stored inside JSON columns (boxes, results), validated on the way in and out."""

from __future__ import annotations

import math
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, model_validator
from sqlalchemy import JSON
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from core.birads import Birads
from core.results import VERSION_METRICS, DetectorVersionMetrics, EncoderVersionMetrics

M = TypeVar("M", bound=BaseModel)


class BoxRecord(BaseModel):
    """One box in pixel xyxy (x0, y0, x1, y1) of the stored PNG, with what it was labeled as."""

    model_config = ConfigDict(frozen=True)

    xyxy: tuple[float, float, float, float]
    birads: Birads | None = None
    kind: Literal["lesion", "other"] = "lesion"
    score: float | None = None
    probs: dict[Birads, float] | None = None
    malignancy: float | None = None  # the grader's P(malignant) (prelabel.pipeline)

    @model_validator(mode="after")
    def _check(self) -> BoxRecord:
        x0, y0, x1, y1 = self.xyxy
        if not all(math.isfinite(v) for v in self.xyxy):
            raise ValueError(f"box has a non-finite coordinate: {self.xyxy}")
        if x1 < x0 or y1 < y0:
            raise ValueError(f"box is not xyxy with x0<=x1, y0<=y1: {self.xyxy}")
        return self


class BoxList(TypeDecorator[list[BoxRecord]]):
    """A JSON column holding a list of BoxRecord."""

    impl = JSON
    cache_ok = True

    def process_bind_param(
        self, value: list[BoxRecord] | None, dialect: Dialect
    ) -> list[dict[str, Any]] | None:
        if value is None:
            return None
        return [
            BoxRecord.model_validate(b).model_dump(mode="json", exclude_none=True) for b in value
        ]

    def process_result_value(self, value: Any, dialect: Dialect) -> list[BoxRecord] | None:
        if value is None:
            return None
        return [BoxRecord.model_validate(b) for b in value]


class PixelText(BaseModel):
    """What the import's OCR pass found in an image's pixels. The words are never stored: they
    may be a name or an age; only where they are and how many."""

    model_config = ConfigDict(frozen=True)

    checked: bool
    engine: str | None = None
    regions: tuple[tuple[int, int, int, int], ...] = ()
    redacted: bool = False

    @property
    def found(self) -> bool:
        return bool(self.regions)


class PixelTextColumn(TypeDecorator[PixelText]):
    """A JSON column holding one PixelText."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: PixelText | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return PixelText.model_validate(value).model_dump(mode="json")

    def process_result_value(self, value: Any, dialect: Dialect) -> PixelText | None:
        return None if value is None else PixelText.model_validate(value)


class ModelJSON(TypeDecorator[M]):
    """A JSON column holding one pydantic model (core.results' typed evaluation results)."""

    impl = JSON
    cache_ok = True

    def __init__(self, model: type[M]) -> None:
        super().__init__()
        self.model = model

    def process_bind_param(self, value: M | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return self.model.model_validate(value).model_dump(mode="json")

    def process_result_value(self, value: Any, dialect: Dialect) -> M | None:
        return None if value is None else self.model.model_validate(value)


class VersionMetricsColumn(TypeDecorator[DetectorVersionMetrics | EncoderVersionMetrics]):
    """A JSON column holding a model version's metrics: one of core.results' VersionMetrics,
    told apart by their `kind` (detector or encoder). None is stored as JSON null."""

    impl = JSON
    cache_ok = True
    should_evaluate_none = True  # insert None as JSON null, not leave the column out

    def process_bind_param(
        self, value: DetectorVersionMetrics | EncoderVersionMetrics | None, dialect: Dialect
    ) -> Any:
        if value is None:
            return None
        return VERSION_METRICS.dump_python(VERSION_METRICS.validate_python(value), mode="json")

    def process_result_value(
        self, value: Any, dialect: Dialect
    ) -> DetectorVersionMetrics | EncoderVersionMetrics | None:
        return None if value is None else VERSION_METRICS.validate_python(value)
