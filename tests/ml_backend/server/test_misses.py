"""Item 7 of issue 12: /predict computes at most `predict_max_misses` uncached tasks per request
and one request's misses at a time; the rest is a 503 with Retry-After, hits are never held up."""

from __future__ import annotations

import pytest

from tests.ml_backend.server.support import StubDetector, World, labels, task


def test_misses_beyond_the_bound_are_a_503_after_computing_the_bound(backend: World) -> None:
    client = backend.client(predict_max_misses=2)
    uncached = backend.ids[2:7]
    tasks = [task(backend.local(i), i, task_id=n) for n, i in enumerate(uncached)]
    tasks.append(task(backend.local(backend.ids[0]), backend.ids[0], task_id=99))
    response = client.post("/predict", json={"tasks": tasks})
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    detail = response.json()["detail"]
    assert (
        detail.startswith("5 tasks need the model; 2 computed now") and "labeler predict" in detail
    )
    assert StubDetector.scored == 2
    assert [backend.cached(i) for i in uncached] == [True, True, False, False, False]
    # the retry computes the next two, and then everything is answered
    assert client.post("/predict", json={"tasks": tasks}).status_code == 503
    final = client.post("/predict", json={"tasks": tasks})
    assert final.status_code == 200 and len(final.json()["results"]) == 6
    assert StubDetector.scored == 5


def test_no_misses_allowed_means_cache_only(backend: World) -> None:
    client = backend.client(predict_max_misses=0)
    hit = client.post("/predict", json={"tasks": [task(backend.local(backend.ids[0]))]})
    assert labels(hit) == [["BI-RADS 4A"]]
    miss = client.post("/predict", json={"tasks": [task(backend.local(backend.ids[2]))]})
    assert miss.status_code == 503 and "Retry-After" in miss.headers
    assert StubDetector.scored == 0


def test_one_request_computes_at_a_time_and_hits_never_wait(backend: World) -> None:
    client = backend.client()
    service = client.app.state.service  # type: ignore[attr-defined]
    assert service._work.acquire(blocking=False)  # another request is computing its misses
    try:
        miss = client.post("/predict", json={"tasks": [task(backend.local(backend.ids[2]))]})
        assert miss.status_code == 503 and "busy" in miss.json()["detail"]
        assert miss.headers["Retry-After"].isdigit()
        hit = client.post("/predict", json={"tasks": [task(backend.local(backend.ids[0]))]})
        assert hit.status_code == 200
    finally:
        service._work.release()
    assert client.post("/predict", json={"tasks": [task(backend.local(backend.ids[2]))]}).is_success


def test_misses_stop_at_the_time_budget(backend: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ml_backend.server.service.MISS_SECONDS", 0.0)
    client = backend.client(predict_max_misses=10)
    tasks = [task(backend.local(i), task_id=n) for n, i in enumerate(backend.ids[2:5])]
    response = client.post("/predict", json={"tasks": tasks})
    assert response.status_code == 503 and "1 computed now" in response.json()["detail"]
