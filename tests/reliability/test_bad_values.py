"""Issue 12 item 8, values: a lone surrogate, out-of-range integers, bodies JSON cannot hold.

`"\\ud800"` and an integer id past SQLite's 64 bits gave 500s. Each body below must get a 4xx on
/predict and /setup, and an answer below 500 on /webhook (a 200 there must say "stored" or
"ignored", and the database must stay intact); never a traceback in a body.
"""

from __future__ import annotations

import httpx

from bench.support.harness import Backend, has_traceback, integrity

SURROGATE = '"\\ud800"'  # as Label Studio's JSON would carry it: an escape, not raw bytes
BIG_INTS = ("9223372036854775808", "-9223372036854775809", "1" + "0" * 30, "1e400", "-0.5")

PREDICT = [
    '{"tasks": [{"id": 1, "data": {"image": ' + SURROGATE + "}}]}",
    '{"tasks": [{"id": 1, "data": {"image": "a.png", "note": ' + SURROGATE + "}}]}",
    '{"tasks": [{"id": 1, "data": {"image": "a.png"}}], "label_config": ' + SURROGATE + "}",
    '{"tasks": [{"id": 1, "data": {"image": "a.png"}}], "params": {' + SURROGATE + ": 1}}",
    '{"tasks": [{"id": 1, "data": {"image": "\\udfff\\ud800"}}]}',
    *(
        f'{{"tasks": [{{"id": 1, "data": {{"image": "x.png", "image_id": {n}}}}}]}}'
        for n in BIG_INTS
    ),
    *(f'{{"tasks": [{{"id": {n}, "data": {{"image": "x.png"}}}}]}}' for n in BIG_INTS),
    '{"tasks": ' + "[" * 20_000 + "]" * 20_000 + "}",
    '{"tasks": [{"id": 1, "data": {"image": "\xff"}}]}',
]
SETUP = [
    '{"hostname": ' + SURROGATE + "}",
    '{"project": ' + SURROGATE + ', "schema": ' + SURROGATE + "}",
    '{"model_version": ' + SURROGATE + "}",
    '{"extra_params": ' + "[" * 20_000 + "]" * 20_000 + "}",
]
WEBHOOK = [
    '{"action": ' + SURROGATE + "}",
    '{"action": "ANNOTATION_CREATED", "annotation": {"id": 5, "result": ' + SURROGATE + "}}",
    '{"action": "ANNOTATION_CREATED", "annotation": {"id": 5, "note": ' + SURROGATE + "}}",
    *(f'{{"action": "ANNOTATION_CREATED", "task": {{"id": {n}}}}}' for n in BIG_INTS),
    *(
        f'{{"action": "ANNOTATION_CREATED", "annotation": {{"id": {n}, "task": 1}}}}'
        for n in BIG_INTS
    ),
    *(f'{{"action": "ANNOTATION_CREATED", "project": {{"id": {n}}}}}' for n in BIG_INTS),
]


def _post(client: httpx.Client, path: str, body: str) -> httpx.Response | str:
    try:
        return client.post(
            path,
            content=body.encode("utf-8", "surrogatepass"),
            headers={"content-type": "application/json"},
        )
    except httpx.TransportError as exc:
        return f"connection dropped ({type(exc).__name__})"


def test_surrogates_and_huge_integers_get_a_4xx(backend: Backend) -> None:
    wrong = []
    with backend.client() as client:
        for path, bodies in (("/predict", PREDICT), ("/setup", SETUP)):
            for body in bodies:
                response = _post(client, path, body)
                if isinstance(response, str) or not 400 <= response.status_code < 500:
                    got = response if isinstance(response, str) else response.status_code
                    wrong.append(f"{path} {body[:70]!r} -> {got}")
                elif has_traceback(response.text):
                    wrong.append(f"{path} {body[:70]!r} -> traceback in the body")
        for body in WEBHOOK:
            response = _post(client, "/webhook", body)
            if isinstance(response, str) or response.status_code >= 500:
                got = response if isinstance(response, str) else response.status_code
                wrong.append(f"/webhook {body[:70]!r} -> {got}")
            elif response.status_code == 200 and response.json().get("status") not in (
                "stored",
                "ignored",
            ):
                wrong.append(f"/webhook {body[:70]!r} -> 200 but {response.text[:100]}")
        assert client.get("/versions").status_code == 200  # the server still answers
    assert wrong == [], "\n".join(wrong)
    assert integrity(backend.home.db) == "ok"
