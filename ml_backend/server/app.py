"""The FastAPI app: settings, database and prediction service wired once per process."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from db.engine import make_engine, make_session_factory
from db.settings import Settings
from ml_backend.detector.interface import Detector
from ml_backend.server.auth import check_auth
from ml_backend.server.routes import health, predict, versions, webhook
from ml_backend.server.service import PredictionService

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, *, loader: Callable[[Path], Detector] | None = None
) -> FastAPI:
    """`loader` replaces the detector loading (tests); the database must already be migrated."""
    settings = settings or Settings()
    sessions = make_session_factory(make_engine(settings.db_url))
    app = FastAPI(title="BI-RADS labeler ML backend", version="1")
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.service = PredictionService(settings, sessions, loader)

    def auth(request: Request) -> None:
        check_auth(settings, request)

    app.include_router(health.router)
    for router in (predict.router, webhook.router, versions.router):
        app.include_router(router, dependencies=[Depends(auth)])

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"detail": "internal error; see the backend log"}, status_code=500)

    return app
