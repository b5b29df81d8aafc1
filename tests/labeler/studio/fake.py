"""Fake Label Studios for the sync and push tests, and a database with pre-labels and tasks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, TypeVar, cast

from sqlalchemy.orm import Session, sessionmaker

from core.birads import Birads
from db.models import Split, StudioEvent
from db.queries import images as image_queries
from db.queries import predictions as prediction_queries
from db.queries import studio as studio_queries
from db.schemas import BoxRecord
from labeler.studio.client import Studio
from ml_backend.studio.boxes import to_percent
from tests.db.rows import add_version

T = TypeVar("T")
W, H = 640, 480
VERSION = "det-test"
PROJECT = 1
PRELABEL = BoxRecord(xyxy=(160.0, 144.0, 384.0, 336.0), birads=Birads.B4A, score=0.9)


@dataclass
class FakeStudio:
    """What sync uses of `Studio`: call(), sdk.users.list(), sdk.tasks.list(...)."""

    tasks: list[Any] = field(default_factory=list)
    users: list[Any] = field(
        default_factory=lambda: [
            SimpleNamespace(id=i, email=f"reader{i}@example.org") for i in (1, 2, 3)
        ]
    )
    url: str = "http://studio.invalid"

    def call(self, fn: Any) -> Any:
        return fn()

    @property
    def sdk(self) -> Any:
        return SimpleNamespace(
            users=SimpleNamespace(list=lambda: iter(self.users)),
            tasks=SimpleNamespace(list=lambda **_: iter(self.tasks)),
        )

    def as_studio(self) -> Studio:
        return cast(Studio, self)


@dataclass
class PushStudio:
    """What push uses of `Studio`: the project's label config, and task imports it records."""

    config: str = ""
    imported: list[dict[str, Any]] = field(default_factory=list)

    def call(self, fn: Any) -> Any:
        return fn()

    @property
    def sdk(self) -> Any:
        projects = SimpleNamespace(
            get=lambda id: SimpleNamespace(label_config=self.config),
            import_tasks=lambda project_id, request: self.imported.extend(request),
        )
        return SimpleNamespace(projects=projects, tasks=SimpleNamespace(list=lambda **_: []))

    def as_studio(self) -> Studio:
        return cast(Studio, self)


def task(task_id: object, *annotations: Any) -> SimpleNamespace:
    return SimpleNamespace(id=task_id, annotations=list(annotations))


def annotation(ann_id: int, task_id: int, reader: int, **extra: Any) -> dict[str, Any]:
    """A reader who accepts the pre-label as it is."""
    value: dict[str, Any] = dict(to_percent(PRELABEL.xyxy, width=W, height=H))
    value["rectanglelabels"] = ["BI-RADS 4A"]
    result = [
        {"from_name": "lesion", "to_name": "image", "type": "rectanglelabels", "value": value},
        {"from_name": "review", "type": "choices", "value": {"choices": ["Pre-label correct"]}},
    ]
    return {"id": ann_id, "task": task_id, "completed_by": reader, "result": result, **extra}


def created(ann: dict[str, Any]) -> dict[str, Any]:
    return {"action": "ANNOTATION_CREATED", "project": {"id": PROJECT}, "annotation": ann}


def store_event(sessions: sessionmaker[Session], payload: dict[str, Any]) -> int:
    """Store an event as received, like an older receiver stored whole bodies."""
    with sessions.begin() as session:
        row = StudioEvent(action=str(payload.get("action")), payload=payload)
        session.add(row)
        session.flush()
        return row.id


def seed(sessions: sessionmaker[Session], n_images: int = 3) -> dict[int, int]:
    """Images with a pre-label and one task each; returns task id -> image id (tasks 101...)."""
    out = {}
    with sessions.begin() as session:
        add_version(session, VERSION, at=datetime.now(UTC), label_space=["4A"])
        for i in range(n_images):
            image = image_queries.add_image(
                session,
                new=image_queries.NewImage(
                    sha256=f"{i:064x}",
                    patient_key=f"p{i}",
                    patient_source="test",
                    lesion_key=None,
                    view=None,
                    width=W,
                    height=H,
                    mode="L",
                    dataset="test",
                    source_id=None,
                    fold=1,
                    split=Split.TRAIN,
                    png_path=f"images/{i}.png",
                ),
            )
            p = prediction_queries.NewPrediction(image.id, (PRELABEL,), Birads.B4A, 0.1)
            prediction_queries.add_predictions(session, model_version_id=VERSION, predictions=[p])
            studio_queries.add_studio_task(
                session,
                image_id=image.id,
                round=1,
                ls_project_id=PROJECT,
                ls_task_id=101 + i,
                model_version_id=VERSION,
            )
            out[101 + i] = image.id
    return out
