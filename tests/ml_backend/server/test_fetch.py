"""Items 4 (downloads) and 5 (SSRF) of issue 12: which hosts the backend fetches from, what it
sends them, and that every failure reads the same and a large body is never read whole."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ml_backend.server.fetch import FETCH_FAILED, FetchPolicy, HostRule
from tests.ml_backend.server.support import World, labels, task

Handler = Callable[[BaseHTTPRequestHandler], None]


@contextmanager
def serving(handle: Handler) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback HTTP server; yields its base URL and what each request carried."""
    seen: list[dict[str, Any]] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, "auth": self.headers.get("Authorization")})
            try:
                handle(self)
            except (BrokenPipeError, ConnectionResetError):
                seen[-1]["aborted"] = True

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()


def _png(data: bytes) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    return handle


def _status(code: int, location: str | None = None) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(code)
        if location:
            h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return handle


def test_only_label_studio_and_listed_hosts_are_fetched(backend: World) -> None:
    png = backend.png(backend.ids[2]).read_bytes()
    with serving(_png(png)) as (listed, hits), serving(_png(png)) as (other, stray):
        client = backend.client(image_hosts=[listed.removeprefix("http://")])
        ok = client.post("/predict", json={"tasks": [task(f"{listed}/a.png")]})
        assert ok.status_code == 200, ok.text
        assert labels(ok) == [["BI-RADS 5"]]
        for url in (
            f"{other}/a.png",
            "http://localhost:22/a.png",
            "http://169.254.169.254/latest/meta-data/",
            f"{listed.replace('127.0.0.1', 'localhost')}/a.png",
            "file:///etc/passwd",
            "gopher://127.0.0.1/",
        ):
            response = client.post("/predict", json={"tasks": [task(url)]})
            assert response.status_code == 400, (url, response.text)
        assert len(hits) == 1 and stray == []


def test_every_fetch_failure_reads_the_same(
    backend: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ml_backend.server.fetch.READ_S", 0.5)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    silent = socket.socket()  # open port that never answers HTTP
    silent.bind(("127.0.0.1", 0))
    silent.listen()

    def garbage(h: BaseHTTPRequestHandler) -> None:
        h.wfile.write(b"SSH-2.0-OpenSSH\r\n")

    with (
        serving(_status(404)) as (missing, _),
        serving(_status(302, "http://127.0.0.1:1/")) as (moved, _),
        serving(garbage) as (not_http, _),
    ):
        urls = [
            f"http://127.0.0.1:{closed_port}/a.png",
            f"http://127.0.0.1:{silent.getsockname()[1]}/a.png",
            f"{missing}/a.png",
            f"{moved}/a.png",
            f"{not_http}/a.png",
            "http://no-such-host.invalid/a.png",
        ]
        hosts = [u.removeprefix("http://").split("/")[0] for u in urls]
        client = backend.client(image_hosts=hosts)
        answers = set()
        for url in urls:
            response = client.post("/predict", json={"tasks": [task(url)]})
            answers.add((response.status_code, response.json()["detail"]))
    silent.close()
    assert answers == {(422, f"task 1: {FETCH_FAILED}")}


def test_setup_cannot_redirect_fetches_or_the_token(backend: World) -> None:
    png = backend.png(backend.ids[2]).read_bytes()
    with serving(_png(png)) as (studio, at_studio), serving(_png(png)) as (evil, at_evil):
        client = backend.client(studio_url=studio)
        setup = {"hostname": evil, "access_token": "secret-token"}
        assert client.post("/setup", json=setup).status_code == 200
        ref = "/data/local-files/?d=images/elsewhere/remote.png"
        assert client.post("/predict", json={"tasks": [task(ref)]}).status_code == 200
        assert at_evil == []  # the relative reference went to Label Studio, not to `evil`
        assert at_studio[-1]["auth"] == "Token secret-token"  # to LABELER_STUDIO_URL only
        client.post("/setup", json={"hostname": evil})  # no token: none is kept
        client.post("/predict", json={"tasks": [task(ref)]})
        assert at_evil == [] and at_studio[-1]["auth"] is None
        client.post("/setup", json={"hostname": studio, "access_token": "secret-token"})
        client.post("/predict", json={"tasks": [task(ref)]})
        assert at_studio[-1]["auth"] == "Token secret-token"


def test_the_token_goes_to_label_studio_only(backend: World) -> None:
    png = backend.png(backend.ids[2]).read_bytes()
    with serving(_png(png)) as (studio, _), serving(_png(png)) as (cdn, at_cdn):
        client = backend.client(studio_url=studio, image_hosts=[cdn.removeprefix("http://")])
        client.post("/setup", json={"hostname": studio, "access_token": "secret-token"})
        assert client.post("/predict", json={"tasks": [task(f"{cdn}/x.png")]}).status_code == 200
        assert at_cdn[0]["auth"] is None


def test_downloads_stop_at_the_cap(backend: World) -> None:
    def endless(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.end_headers()  # no Content-Length: the body streams until the connection ends
        for _ in range(20_000):  # 1.3 GB if read whole
            h.wfile.write(b"\0" * 65536)

    def declared(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(300 * 1024 * 1024))
        h.end_headers()
        h.wfile.write(b"\0" * 65536)

    with serving(endless) as (big, seen), serving(declared) as (liar, _):
        hosts = [big.removeprefix("http://"), liar.removeprefix("http://")]
        client = backend.client(image_hosts=hosts, max_download_bytes=1024 * 1024)
        for url in (f"{big}/a.png", f"{liar}/a.png"):
            response = client.post("/predict", json={"tasks": [task(url)]})
            assert response.status_code == 413, response.text
    assert seen[0].get("aborted") is True  # the stream was dropped, not read to its end


@pytest.mark.parametrize(
    ("entry", "url", "allowed"),
    [
        ("images.example.org", "https://images.example.org/a.png", True),
        ("images.example.org", "http://images.example.org:8080/a.png", False),
        ("images.example.org:8080", "http://images.example.org:8080/a.png", True),
        ("https://images.example.org", "https://IMAGES.example.org/a.png", True),
        ("images.example.org", "https://evil.example.org/a.png", False),
        ("images.example.org", "https://images.example.org.evil.net/a.png", False),
    ],
)
def test_image_host_rules(entry: str, url: str, allowed: bool) -> None:
    rule = HostRule.parse(entry)
    assert rule is not None
    policy = FetchPolicy("http://127.0.0.1:8080", (rule,))
    assert policy.allows(url) is allowed
    assert not policy.allows("http://127.0.0.1:8081/a.png")
    assert policy.allows("http://127.0.0.1:8080/data/local-files/?d=a.png")


def test_label_studio_uploads_are_fetched_from_label_studio(backend: World) -> None:
    """Images uploaded into Label Studio arrive as relative `/data/upload/...` references."""
    png = backend.png(backend.ids[2]).read_bytes()
    with serving(_png(png)) as (studio, at_studio):
        client = backend.client(studio_url=studio)
        client.post("/setup", json={"hostname": studio, "access_token": "secret-token"})
        response = client.post("/predict", json={"tasks": [task("/data/upload/3/a1b2-us.png")]})
        assert response.status_code == 200
        assert at_studio[-1] == {"path": "/data/upload/3/a1b2-us.png", "auth": "Token secret-token"}


def test_each_project_keeps_the_access_its_own_setup_gave(backend: World) -> None:
    """Issue 13 item 7: a second project's /setup does not replace the first one's token."""
    png = backend.png(backend.ids[2]).read_bytes()
    ref = "/data/local-files/?d=images/elsewhere/remote.png"
    with serving(_png(png)) as (studio, at_studio):
        client = backend.client(studio_url=studio)

        def token_sent(project: str | None) -> str | None:
            body: dict[str, Any] = {"tasks": [task(ref)]}
            if project is not None:
                body["project"] = project
            assert client.post("/predict", json=body).status_code == 200
            auth: str | None = at_studio[-1]["auth"]
            return auth

        for project, token in (("1.1700000000", "token-one"), ("2.1700000500", "token-two")):
            setup = {"project": project, "hostname": studio, "access_token": token}
            assert client.post("/setup", json=setup).status_code == 200
        assert token_sent("1.1700000000") == "Token token-one"
        assert token_sent("2.1700000500") == "Token token-two"
        assert token_sent("1.1800000000") == "Token token-one"  # the id names the project
        assert token_sent("3.1700000000") is None  # never set up: the settings' access
        assert token_sent(None) is None


def test_project_keys_read_label_studios_project_names() -> None:
    from ml_backend.server.access import StudioAccess, project_key

    assert [project_key(p) for p in ("12.1700000000", "12", None, "", "x.1", "١٢.1")] == [
        12,
        12,
        None,
        None,
        None,
        None,
    ]
    access = StudioAccess(FetchPolicy("http://127.0.0.1:8080", ()), limit=2)
    for project in (1, 2, 3):
        access.setup(project, "http://127.0.0.1:8080", f"t{project}")
    assert [access.policy(p).token for p in (1, 2, 3)] == [None, "t2", "t3"]  # oldest dropped
