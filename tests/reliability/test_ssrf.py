"""Issue 12 item 5: the backend fetches only from Label Studio's host (plus LABELER_IMAGE_HOSTS),
follows no redirect, and gives one error text for every fetch failure.

Every http(s) URL used to be fetched, localhost included, and the answers told a closed port, an
open one and a 404 apart. Here a loopback server we open ourselves records every request it
gets: with Label Studio elsewhere it must get none, whatever the spelling of its address (and
/setup must not widen the list); with it as Label Studio's host, a 404, a 500 and a redirect
must read the same, and the redirect must not be followed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.support.harness import (
    Backend,
    Home,
    free_port,
    huge_png,
    predict_body,
    running_backend,
)
from bench.support.loopback import Loopback, Reply, fixed, serving


@pytest.fixture(scope="module")
def recorder() -> Iterator[Loopback]:
    png = huge_png(64, 64)
    routes = {
        "/ok.png": fixed(Reply(200, png, "image/png")),
        "/error.png": fixed(Reply(500, b"boom", "text/plain")),
        "/redirect.png": fixed(Reply(302, b"", headers=(("Location", "/ok.png"),))),
    }
    with serving(routes) as server:
        yield server


def _answers(backend: Backend, urls: list[str]) -> set[tuple[int, str]]:
    with backend.client() as client:
        answers = set()
        for url in urls:
            response = client.post("/predict", json=predict_body(url, task_id=5))
            detail = response.json().get("detail") if response.status_code != 200 else None
            answers.add((response.status_code, str(detail)))
        return answers


def test_hosts_other_than_label_studio_are_never_fetched(
    fresh_home: Home, recorder: Loopback
) -> None:
    closed = free_port()
    port = recorder.port
    urls = [
        f"http://127.0.0.1:{port}/ok.png",
        f"http://127.0.0.1:{port}/missing.png",
        f"http://127.0.0.1:{port}/redirect.png",
        f"http://127.0.0.1:{closed}/ok.png",
        f"http://localhost:{port}/ok.png",
        f"http://0x7f000001:{port}/ok.png",
        f"http://2130706433:{port}/ok.png",
        f"http://[::1]:{port}/ok.png",
        f"https://127.0.0.1:{port}/ok.png",
        f"http://user:pw@127.0.0.1:{port}/ok.png",
        f"http://localhost:{closed}@127.0.0.1:{port}/ok.png",
        f"HTTP://127.0.0.1:{port}/ok.png",
    ]
    studio = f"http://localhost:{free_port()}"  # Label Studio's host: not the recorder's
    with running_backend(fresh_home, {"LABELER_STUDIO_URL": studio}) as backend:
        answers = _answers(backend, urls)
        with backend.client() as client:
            setup = client.post("/setup", json={"hostname": recorder.url, "access_token": "t"})
            assert setup.status_code < 500, setup.text
        after_setup = _answers(backend, urls[:1])
    assert recorder.requests == [], "the backend fetched from a host that is not allowed"
    assert len(answers) == 1, f"the answers tell the targets apart: {sorted(answers)}"
    status, _detail = answers.pop()
    assert 400 <= status < 500
    assert after_setup == {(status, _detail)}, "/setup widened the hosts the backend fetches from"


def test_fetch_failures_at_label_studio_read_the_same(fresh_home: Home, recorder: Loopback) -> None:
    recorder.requests.clear()
    base = recorder.url
    with running_backend(fresh_home, {"LABELER_STUDIO_URL": base}) as backend:
        control = _answers(backend, [f"{base}/ok.png"])
        answers = _answers(
            backend, [f"{base}/missing.png", f"{base}/error.png", f"{base}/redirect.png"]
        )
    assert {status for status, _ in control} == {200}, control  # Label Studio's host is fetched
    assert len(answers) == 1, f"fetch failures read differently: {sorted(answers)}"
    assert 400 <= answers.pop()[0] < 500
    assert recorder.requests.count("GET /ok.png") == 1, "a redirect was followed"
