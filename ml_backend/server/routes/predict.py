"""/setup and /predict: what Label Studio calls to name the model and fetch pre-labels."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ml_backend.server.request_log import cache_counts
from ml_backend.server.schemas import PredictRequest, SetupRequest
from ml_backend.server.service import PredictionService
from ml_backend.studio.schema import PredictResponse

router = APIRouter(tags=["predict"])


def _service(request: Request) -> PredictionService:
    service: PredictionService = request.app.state.service
    return service


@router.post("/setup")
def setup(body: SetupRequest, request: Request) -> dict[str, Any]:
    """Label Studio asks which model version serves; it refetches when this changes.

    A damaged active version is a 503 (not advertised); a hostname that is not Label Studio's
    own (or listed in LABELER_IMAGE_HOSTS) is ignored, so no caller can redirect the fetches.
    The address and token are kept for the project named, not for every project.
    """
    service = _service(request)
    return {"model_version": service.setup(body.hostname, body.access_token, project=body.project)}


@router.post("/predict")
async def predict(body: PredictRequest, request: Request) -> dict[str, Any]:
    """Cached pre-labels; a bounded number of misses computed; 503 + Retry-After beyond.

    The request's hits and misses are counted for its access log line too."""
    version, results = await run_in_threadpool(
        _service(request).predict_many,
        body.tasks,
        label_config=body.label_config,
        project=body.project,
        tally=cache_counts(request.scope),
    )
    return PredictResponse(results=results, model_version=version).body()
