from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from ml_backend.server.images import ImageRefused, ImageUnavailable, StudioAccess
from ml_backend.server.schemas import PredictRequest, SetupRequest
from ml_backend.server.service import NoActiveModel, PredictionService

router = APIRouter(tags=["predict"])


def _service(request: Request) -> PredictionService:
    service: PredictionService = request.app.state.service
    return service


@router.post("/setup")
def setup(body: SetupRequest, request: Request) -> dict[str, Any]:
    """Label Studio asks which model version serves; it refetches when this changes."""
    service = _service(request)
    if body.hostname or body.access_token:
        service.studio = StudioAccess(body.hostname, body.access_token)
    return {"model_version": service.model_version()}


@router.post("/predict")
async def predict(body: PredictRequest, request: Request) -> dict[str, Any]:
    service = _service(request)
    results = []
    for task in body.tasks:
        try:
            results.append(
                await run_in_threadpool(service.predict, task, label_config=body.label_config)
            )
        except ImageRefused as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, _where(task.id, exc)) from exc
        except ImageUnavailable as exc:
            unreadable = status.HTTP_422_UNPROCESSABLE_CONTENT
            raise HTTPException(unreadable, _where(task.id, exc)) from exc
        except NoActiveModel as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    return {"results": results, "model_version": service.model_version()}


def _where(task_id: int | None, exc: Exception) -> str:
    return f"task {task_id}: {exc}"
