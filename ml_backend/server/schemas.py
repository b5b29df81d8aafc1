"""Request bodies as Label Studio sends them; unknown fields are kept, wrong types refused."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TaskData(BaseModel):
    model_config = ConfigDict(extra="allow")
    image: str = Field(min_length=1, max_length=4096)
    image_id: int | None = None


class Task(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int | None = None
    data: TaskData


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    tasks: list[Task] = Field(min_length=1, max_length=1000)
    project: str | None = None
    label_config: str | None = None
    params: dict[str, Any] | None = None


class SetupRequest(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    project: str | None = None
    label_schema: str | None = Field(None, alias="schema")
    hostname: str | None = None
    access_token: str | None = None
    model_version: str | None = None
    extra_params: Any = None


class WebhookEvent(BaseModel):
    model_config = ConfigDict(extra="allow")
    action: str = Field(min_length=1, max_length=60)
    project: dict[str, Any] | None = None
    task: dict[str, Any] | None = None
    annotation: dict[str, Any] | None = None
