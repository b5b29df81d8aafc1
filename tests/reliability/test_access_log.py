"""Issue 15: the backend's log has one line per request, and never a file name or patient key.

`ml-backend.log` (the stdout and stderr of `labeler serve`, labeler/services.py) stayed empty
for a whole demo session: uvicorn runs at level warning, so its access log and start-up lines
were off, and the app itself logged nothing per request. A real `labeler serve` must now write
`method= route= status= ms=` (with `hits= misses=` on /predict) for each request, and nothing
of the query strings, image references or patients it was sent.
"""

from __future__ import annotations

import time

from bench.support.harness import (
    Backend,
    Home,
    cached_ids,
    column,
    images,
    local_ref,
    predict_body,
    running_backend,
)

LOGGER = "ml_backend.server.request_log: "
Line = dict[str, str]


def _lines(backend: Backend, routes: set[str], timeout: float = 15.0) -> dict[str, list[Line]]:
    """The access lines by route, once each of `routes` has one (a line is written just after
    its answer went out); the harness's /health probes before the test's requests are there too."""
    deadline = time.monotonic() + timeout
    while True:
        text = backend.log.read_text(errors="replace") if backend.log.exists() else ""
        found = [line.split(LOGGER, 1)[1] for line in text.splitlines() if LOGGER in line]
        by_route: dict[str, list[Line]] = {}
        for line in found:
            fields = dict(part.split("=", 1) for part in line.split())
            by_route.setdefault(fields.get("route", "?"), []).append(fields)
        if routes <= by_route.keys() or time.monotonic() > deadline:
            return by_route
        time.sleep(0.1)


def _never_logged(home: Home) -> set[str]:
    """Every stored PNG path and file name, every source id and patient key of the home."""
    out: set[str] = set()
    for _, png in images(home):
        out |= {png, png.rsplit("/", 1)[-1]}
    out |= {str(v) for v in column(home.db, "SELECT source_id FROM images") if v}
    out |= {str(v) for v in column(home.db, "SELECT key FROM patients") if v}
    return {s for s in out if len(s) >= 4}


def test_each_request_is_one_log_line_without_paths_queries_or_patients(fresh_home: Home) -> None:
    cached = cached_ids(fresh_home)
    image_id, png = next((i, p) for i, p in images(fresh_home) if i in cached)
    with running_backend(fresh_home) as backend, backend.client() as client:
        answers = [
            client.get("/health", params={"patient": "query-patient-9"}),
            client.post(
                "/predict",
                json=predict_body(local_ref(png), image_id),
                params={"d": "query-file.png"},
            ),
            client.get(local_ref(png)),  # Label Studio's file URL: not a route of ours
        ]
        assert [a.status_code for a in answers] == [200, 200, 404]
        lines = _lines(backend, {"/health", "/predict", "-"})
        text = backend.log_tail(10**7)
    assert sorted(lines) == ["-", "/health", "/predict"], sorted(lines)
    (predict,), (unmatched,) = lines["/predict"], lines["-"]
    for health in lines["/health"]:  # the test's, and the harness's probes before it
        assert {k: v for k, v in health.items() if k != "ms"} == {
            "method": "GET",
            "route": "/health",
            "status": "200",
        }
    assert {k: v for k, v in predict.items() if k != "ms"} == {
        "method": "POST",
        "route": "/predict",
        "status": "200",
        "hits": "1",
        "misses": "0",
    }
    assert float(predict["ms"]) > 0
    assert (unmatched["route"], unmatched["status"]) == ("-", "404")
    assert "HTTP/1.1" not in text, "uvicorn's access log (it prints query strings) must stay off"
    for word in ("?", "query-", "local-files", ".png", "images/"):
        assert word not in text, word
    assert [s for s in _never_logged(fresh_home) if s in text] == []
