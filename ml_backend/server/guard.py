"""The gate in front of every route: auth, then the body size, before any route sees a byte.

A pure ASGI middleware (no BaseHTTPMiddleware, which would read the body to hand it on): it
checks the credentials from the headers alone (401 before the body is read), refuses a declared
Content-Length over `max_body_bytes` at once (413), and counts a streamed (chunked) body as it
arrives, stopping at the cap (413). The body, at most the cap, is then replayed to the app. A
JSON body with a lone UTF-16 surrogate escape (`"\\ud800"`) is a 400 here: Python's json accepts
it, but it cannot be encoded again, which used to end in a 500 when it was stored or echoed.
/health and / stay open: they are Label Studio's connection check and read nothing.
"""

from __future__ import annotations

import json
import re

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ml_backend.server.auth import Credentials

OPEN_PATHS = frozenset({"/", "/health"})
ESCAPE = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)


class Guard:
    def __init__(self, app: ASGIApp, *, credentials: Credentials | None, max_body: int) -> None:
        self.app = app
        self.credentials = credentials
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        creds = self.credentials
        needed = creds is not None and scope["path"] not in OPEN_PATHS
        if needed and creds is not None and not creds.accepts(headers.get("authorization", "")):
            challenge = {"www-authenticate": creds.challenge()}
            await reply(send, 401, "authentication required", challenge)
            return
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            bad = not declared.isdigit()
            await reply(send, 400 if bad else 413, "bad Content-Length" if bad else self._big())
            return
        body = await read_body(receive, self.max_body)
        if body is None:
            await reply(send, 413, self._big())
            return
        if lone_surrogate(body):
            await reply(send, 400, "request body holds a lone UTF-16 surrogate (\\ud800-\\udfff)")
            return
        await self.app(scope, replay(body, receive), send)

    def _big(self) -> str:
        return f"request body is larger than {self.max_body} bytes (LABELER_MAX_BODY_BYTES)"


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes `limit` (the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away: the app will see an empty body and no one reads it
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # waits for the disconnect, as the server's own receive does
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


def lone_surrogate(body: bytes) -> bool:
    """Whether a JSON text has a `\\uD800`-`\\uDFFF` escape that is not a proper pair."""
    if b"\\" not in body:
        return False
    pending = -1  # end offset of a high surrogate escape waiting for its low half
    for match in ESCAPE.finditer(body):
        code = int(match.group(1), 16) if match.group(1) else -1
        if 0xDC00 <= code <= 0xDFFF and pending == match.start():
            pending = -1
            continue
        if pending != -1 or 0xDC00 <= code <= 0xDFFF:
            return True
        if 0xD800 <= code <= 0xDBFF:
            pending = match.end()
    return pending != -1


async def reply(
    send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
