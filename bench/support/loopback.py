"""Tiny HTTP servers on 127.0.0.1 that the tests open themselves: they record every request.

Used as the "other host" of the SSRF tests (a PNG, a 404, a redirect), as Label Studio's file
server for the cache-poisoning test, and as a stand-in for the Label Studio API `labeler sync`
calls (see studio_standin.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/octet-stream"
    headers: tuple[tuple[str, str], ...] = ()
    stream: int = 0  # then this many zero bytes, 1 MB at a time, until the client hangs up
    declare: bool = True  # send Content-Length (else the body ends when the connection closes)

    @staticmethod
    def json(value: object, status: int = 200) -> Reply:
        return Reply(status, json.dumps(value).encode(), "application/json")


Route = Callable[[str], Reply]  # gets the full path with its query


@dataclass
class Loopback:
    """Routes by path (without the query); unknown paths answer 404. Requests are recorded."""

    routes: dict[str, Route]
    requests: list[str] = field(default_factory=list)
    streamed: list[int] = field(default_factory=list)  # bytes each streamed reply got out
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, method: str, path: str) -> Reply:
        self.requests.append(f"{method} {path}")
        route = self.routes.get(urlparse(path).path)
        return route(path) if route is not None else Reply(404, b"not found", "text/plain")


def _handler(server: Loopback) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._reply(server.answer("GET", self.path))

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(min(length, 1 << 20))
            self._reply(server.answer("POST", self.path))

        def _reply(self, reply: Reply) -> None:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            if reply.declare:
                self.send_header("Content-Length", str(len(reply.body) + reply.stream))
            for key, value in reply.headers:
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(reply.body)
            if reply.stream:
                server.streamed.append(self._stream(reply.stream))

        def _stream(self, total: int) -> int:
            sent, chunk = 0, bytes(1 << 20)
            try:
                while sent < total:
                    self.wfile.write(chunk[: total - sent])
                    sent += min(len(chunk), total - sent)
            except OSError:
                pass  # the client stopped reading: what we count is what got out
            return sent

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@contextmanager
def serving(routes: dict[str, Route]) -> Iterator[Loopback]:
    """Serve `routes` on a free 127.0.0.1 port until the block ends."""
    state = Loopback(routes)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = int(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def fixed(reply: Reply) -> Route:
    return lambda _path: reply
