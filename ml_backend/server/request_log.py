"""The access log: one line per request in the backend's log, and nothing a patient could be
found by.

A line reads `method=POST route=/predict status=200 ms=12.3 hits=2 misses=0`: the method, the
route *template* the request matched (never the path as sent, never the query string: a Label
Studio local-files reference, `/data/local-files/?d=images/...png`, carries a file name), the
status answered, the time to answer in milliseconds, and for /predict the request's cache hits
and misses (what it added to the service's counters). A path that matches no route is `-`, a
method outside the usual ones `OTHER`. Bodies, image references, file names and patient keys
are never read here.

A pure ASGI middleware outside the Guard, so a 401 or 413 of the Guard is logged too; an
exception that escapes the app is logged as the 500 it is answered with. uvicorn's own access
log (which prints the query string) stays off: `labeler serve` runs uvicorn at level warning.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from starlette.routing import BaseRoute, Route, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ml_backend.counters import Counters

log = logging.getLogger(__name__)
SCOPE_KEY = "labeler.request_log"
CACHE_ROUTES = frozenset({"/predict"})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "-"


@dataclass
class RequestRecord:
    """What one request tells its log line beyond the ASGI messages: its cache hits and misses."""

    cache: Counters = field(default_factory=lambda: Counters("hits", "misses"))


def cache_counts(scope: Scope) -> Counters | None:
    """The request's own hit/miss counters (None outside the middleware, e.g. a bare app)."""
    record = scope.get(SCOPE_KEY)
    return record.cache if isinstance(record, RequestRecord) else None


def route_paths(routes: Iterable[BaseRoute]) -> list[str]:
    """The path templates of plain routes (an included router is a route of another kind:
    pass its own routes too)."""
    return [route.path for route in routes if isinstance(route, Route)]


class RequestLog:
    def __init__(self, app: ASGIApp, *, templates: Sequence[str]) -> None:
        self.app = app
        self.patterns = [(compile_path(t)[0], t) for t in dict.fromkeys(templates)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = RequestRecord()
        scope[SCOPE_KEY] = record
        route = route_template(self.patterns, scope)
        status = [500]  # what the server error handler answers when the app raises

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, sending)
        finally:
            ms = (time.perf_counter() - start) * 1000
            log.info("%s", access_line(scope, route, status[0], ms, record))


def route_template(patterns: Sequence[tuple[re.Pattern[str], str]], scope: Scope) -> str:
    """The template whose pattern the request's path matches (whatever the method: a 405 names
    its route); `-` when none does."""
    path = str(scope["path"]).removeprefix(str(scope.get("root_path", "")))  # as Starlette routes
    return next((t for pattern, t in patterns if pattern.match(path)), UNMATCHED)


def access_line(scope: Scope, route: str, status: int, ms: float, record: RequestRecord) -> str:
    method = str(scope.get("method", ""))
    method = method if method in METHODS else "OTHER"
    line = f"method={method} route={route} status={status} ms={ms:.1f}"
    if route in CACHE_ROUTES:
        counts = record.cache.snapshot()
        line += f" hits={counts['hits']} misses={counts['misses']}"
    return line
