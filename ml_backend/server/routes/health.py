from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

router = APIRouter(tags=["health"])


@router.get("/health")
@router.get("/")
def health(request: Request) -> dict[str, Any]:
    """Label Studio's connection check; no auth and no database work."""
    return {"status": "UP", "model_class": "FasterRCNNDetector"}
