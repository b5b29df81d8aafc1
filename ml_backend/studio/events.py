"""What Label Studio sends us, typed: webhook events, annotations, and our tasks read back.

Webhook events are what the receiver stores and the sync reads back.

Only the fields the sync needs survive validation (unknown fields are dropped, not stored), every
list and string is bounded, and ids are ints that fit a PostgreSQL INTEGER. The same model reads
a stored event back, so an old row stored whole by an earlier version validates too, and a row
that does not is set aside by the sync with the validation error as its reason.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    model_validator,
)

from core.errors import BadInputError

MAX_ID: Final = 2**31 - 1
MAX_REGIONS: Final = 200  # regions in one annotation (a reader draws a handful of boxes)
MAX_DELETED: Final = 10_000  # annotation ids in one ANNOTATIONS_DELETED event
MAX_STORED_BYTES: Final = 256 * 1024  # one stored event, as JSON
ANNOTATION_ACTIONS: Final = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")
TRAINING: Final = "START_TRAINING"
STORED_ACTIONS: Final = (*ANNOTATION_ACTIONS, TRAINING)

LsId = Annotated[StrictInt, Field(ge=0, le=MAX_ID)]
Name = Annotated[str, Field(max_length=100)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class EventTooLargeError(BadInputError):
    """The event validates but is larger than one stored event may be (HTTP 413)."""


def _iso(value: object) -> object:
    """A timestamp as text: the API client may hand back a datetime, the webhook a string."""
    return value.isoformat() if isinstance(value, datetime) else value


def _id_of(value: object) -> object:
    """Label Studio sends a user as its id or as an object with one."""
    return value.get("id") if isinstance(value, dict) else value


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_max_length=200)


class RegionValue(_Model):
    """What a rectangle or a choice holds (percent coordinates, label names)."""

    x: Finite | None = None
    y: Finite | None = None
    width: Finite | None = None
    height: Finite | None = None
    rotation: Finite | None = None
    rectanglelabels: list[Name] | None = Field(None, max_length=20)
    choices: list[Name] | None = Field(None, max_length=20)


class Region(_Model):
    from_name: Name | None = None
    type: Name | None = None
    value: RegionValue = RegionValue()
    original_width: LsId | None = None
    original_height: LsId | None = None


class Annotation(_Model):
    """One reader's annotation, from a webhook or from the reconcile's task listing."""

    id: LsId
    task: Annotated[LsId | None, BeforeValidator(_id_of)] = None
    result: list[Region] = Field(default_factory=list, max_length=MAX_REGIONS)
    was_cancelled: bool = False
    completed_by: Annotated[LsId | None, BeforeValidator(_id_of)] = None
    created_at: Annotated[Name | None, BeforeValidator(_iso)] = None
    updated_at: Annotated[Name | None, BeforeValidator(_iso)] = None

    def regions(self) -> list[dict[str, Any]]:
        """The result as plain JSON, for `format.parse_annotation`."""
        return [r.model_dump(mode="json", exclude_none=True) for r in self.result]


class Ref(_Model):
    id: LsId | None = None


class DeletedAnnotation(_Model):
    id: LsId


class WebhookEvent(_Model):
    """One webhook call, reduced to what the sync needs."""

    action: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,59}$")]
    project: Ref | None = None
    task: Ref | None = None
    annotation: Annotation | None = None
    annotations: list[DeletedAnnotation] | None = Field(None, max_length=MAX_DELETED)

    @model_validator(mode="after")
    def _complete(self) -> WebhookEvent:
        if self.action in ANNOTATION_ACTIONS[:2] and self.annotation is None:
            raise ValueError(f"{self.action} carries no annotation")
        if self.action == "ANNOTATIONS_DELETED" and self.annotations is None:
            raise ValueError("ANNOTATIONS_DELETED carries no annotations")
        return self

    @property
    def stored(self) -> bool:
        """Only annotation changes and training requests are kept; the rest is answered only."""
        return self.action in STORED_ACTIONS

    @property
    def task_id(self) -> int | None:
        if self.task is not None and self.task.id is not None:
            return self.task.id
        return self.annotation.task if self.annotation else None

    def payload(self) -> dict[str, Any]:
        """The JSON stored for the sync; raises EventTooLargeError past MAX_STORED_BYTES."""
        data = self.model_dump(mode="json", exclude_none=True)
        size = len(json.dumps(data, separators=(",", ":")))
        if size > MAX_STORED_BYTES:
            raise EventTooLargeError(
                f"event of {size} bytes; at most {MAX_STORED_BYTES} are stored"
            )
        return data


class ListedTaskData(_Model):
    """Our fields of a task, read back from the project (schema.TaskData is what we send)."""

    image_id: LsId
    round: Annotated[StrictInt, Field(ge=1, le=MAX_ID)] = 1
    model_version: str | None = None


class ListedTask(_Model):
    """A task of the project listing: ours when its data carries our `image_id`."""

    id: LsId
    data: ListedTaskData


def listed_task(item: object) -> ListedTask | None:
    """One listed task as ours, or None for a task we did not push (or cannot read)."""
    try:
        return ListedTask.model_validate(plain(item))
    except ValidationError:
        return None


def plain(item: object) -> object:
    """An SDK object (unchecked, may hold anything) or a dict -> plain data to validate."""
    if isinstance(item, BaseModel):
        try:
            return item.model_dump(mode="json", warnings=False)
        except ValueError:  # holds something JSON cannot: validation then says what
            return item.model_dump(warnings=False)
    return item


def reason(exc: ValidationError, *, limit: int = 3) -> str:
    """A short reason from a validation error: where and what, never the offending value."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:limit]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
