"""Issue 12 item 11, from the outside: a damaged model version and a corrupt database.

Deleted or changed weights of the active version: /setup advertised it, a cache miss gave 500,
`labeler predict` a traceback. A corrupt labeler.db: tracebacks everywhere. Now a miss is refused
with one line (503) while cached pre-labels may still be served, /setup does not advertise the
damaged version, `labeler predict` exits 6 with one line; `labeler status` on a corrupt database
exits 5 with one line, and `labeler serve` does not start on it. (`labeler models verify` and the
other commands' codes are tested in tests/labeler.)
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import httpx

from bench.support.harness import (
    Backend,
    Home,
    cached_ids,
    cli,
    column,
    has_traceback,
    images,
    launch_backend,
    local_ref,
    predict_body,
    running_backend,
)


def _weights(home: Home) -> tuple[str, Path]:
    version = str(column(home.db, "SELECT model_version_id FROM active_models")[0])
    return version, home.home / "models" / version / "weights.pt"


def _damage(path: Path) -> None:
    """Flip bytes in a copy (the seed's file is a hard link and must stay intact)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    path.unlink()
    path.write_bytes(bytes(data))


def _one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and not has_traceback(text)


def test_damaged_weights_are_refused_with_one_line(fresh_home: Home) -> None:
    version, weights = _weights(fresh_home)
    cached = cached_ids(fresh_home)
    hit = next((i, p) for i, p in images(fresh_home) if i in cached)
    miss = next((i, p) for i, p in images(fresh_home) if i not in cached)
    with running_backend(fresh_home) as backend, backend.client() as client:
        _damage(weights)
        response = client.post("/predict", json=predict_body(local_ref(miss[1]), miss[0]))
        assert response.status_code == 503, (response.status_code, response.text[:300])
        assert _one_line(str(response.json()["detail"]))
        setup = client.post("/setup", json={})
        assert setup.status_code != 200 or setup.json().get("model_version") != version
        cached_answer = client.post("/predict", json=predict_body(local_ref(hit[1]), hit[0]))
        assert cached_answer.status_code in (200, 503), cached_answer.text[:300]
    predict = cli(fresh_home, "predict")
    assert predict.returncode == 6, (predict.returncode, predict.stderr[-1500:])
    assert _one_line(predict.stderr), predict.stderr[-1500:]


def _exit_code(backend: Backend, timeout: float = 60.0) -> int | None:
    """Its exit code; None if it answered /health instead (it started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (code := backend.process.poll()) is not None:
            return code
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"{backend.url}/health", timeout=1, trust_env=False)
            return None
        time.sleep(0.2)
    return None


def test_a_corrupt_database_is_one_line_and_exit_code_5(fresh_home: Home) -> None:
    for side in fresh_home.home.glob("labeler.db-*"):
        side.unlink()
    with fresh_home.db.open("r+b") as fh:
        fh.write(b"this is not a database, it was overwritten" * 100)
    result = cli(fresh_home, "status")
    assert result.returncode == 5, (result.returncode, result.stderr[-1500:])
    assert _one_line(result.stderr), result.stderr[-1500:]
    backend = launch_backend(fresh_home)
    try:
        code = _exit_code(backend)
    finally:
        backend.kill()
    assert code not in (None, 0), "labeler serve ran on a corrupt database"
    assert _one_line(backend.log.read_text(errors="replace")), backend.log_tail()
