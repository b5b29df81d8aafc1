"""The FastAPI app: settings, database and prediction service wired once per process.

Every request is logged in one line (request_log.py: method, route template, status, ms, and
/predict's cache hits and misses; never the path as sent, a query or a body), then passes the
guard (auth from the headers, then the body cap); /docs, /redoc and /openapi.json are behind it
like every route but /health. Expected failures answer their own status with a fixed one-line
detail; validation errors name the field, never echo the input; anything else is a 500 whose
body says only to look at the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from core.settings import Settings
from db.engine import make_engine, make_session_factory
from ml_backend.detector.interface import Detector
from ml_backend.server.auth import credentials
from ml_backend.server.errors import BackendError
from ml_backend.server.guard import Guard
from ml_backend.server.request_log import RequestLog, route_paths
from ml_backend.server.routes import health, predict, versions, webhook
from ml_backend.server.service import PredictionService

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, *, loader: Callable[[Path], Detector] | None = None
) -> FastAPI:
    """`loader` replaces the detector loading (tests); the database must already be migrated.

    Raises BackendConfigError (a ValueError) when auth is on without its secret.
    """
    settings = settings or Settings()
    creds = credentials(settings)
    sessions = make_session_factory(make_engine(settings.db_url))
    app = FastAPI(title="BI-RADS labeler ML backend", version="1")
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.service = PredictionService(settings, sessions, loader)
    routers = (health.router, predict.router, webhook.router, versions.router)
    for router in routers:
        app.include_router(router)
    app.add_middleware(Guard, credentials=creds, max_body=settings.max_body_bytes)
    paths = [*route_paths(app.router.routes), *(p for r in routers for p in route_paths(r.routes))]
    app.add_middleware(RequestLog, templates=paths)  # the outermost: logs the Guard's answers too
    _handlers(app)
    return app


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(BackendError)
    async def expected(request: Request, exc: BackendError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(part) for part in err.get("loc", ())], "msg": str(err.get("msg", ""))}
            for err in exc.errors()[:20]
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"detail": "internal error; see the backend log"}, status_code=500)
