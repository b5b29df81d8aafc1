"""Request bodies as Label Studio sends them; unknown fields are kept, wrong types refused."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

INT32_MAX = 2**31 - 1
# Ids as Label Studio and our tables have them: anything else is a 422, never an overflow (500).
RowId = Annotated[int, Field(ge=0, le=INT32_MAX)]


class TaskData(BaseModel):
    model_config = ConfigDict(extra="allow")
    image: str = Field(min_length=1, max_length=4096)
    image_id: RowId | None = None


class Task(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: RowId | None = None
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
