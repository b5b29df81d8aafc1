from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ml_backend.server.service import PredictionService

router = APIRouter(tags=["versions"])


@router.get("/versions")
def versions(request: Request) -> dict[str, Any]:
    service: PredictionService = request.app.state.service
    return {"versions": service.versions(), "active": service.model_version()}
