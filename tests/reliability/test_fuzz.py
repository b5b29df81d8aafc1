"""Every route of the backend's own OpenAPI schema, fuzzed (schemathesis): no 5xx, no traceback.

Bodies that fit the schema and bodies that do not (schemathesis' positive and negative modes)
go to a real `labeler serve`; each answer must be below 500 and carry no traceback text. The run
is bounded: a fixed number of examples per route and mode, derandomized, no example database.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation

from bench.support.harness import TRACEBACK_MARKS, Backend, Home, integrity, running_backend

Operation = APIOperation[Any, Any, Any, Any]
EXAMPLES = 50  # per route and mode: about 600 requests in all, well under 30 s


@pytest.fixture
def subnormal_floats() -> Iterator[None]:
    """Hypothesis cannot draw floats while flush-to-zero is on, and the test session turns it on
    (tests/conftest.py, as the CLI entry point does); off while fuzzing, then as it was."""
    was_on = sys.float_info.min / 2 == 0.0
    torch.set_flush_denormal(False)
    yield
    if was_on:
        torch.set_flush_denormal(True)


@pytest.fixture(scope="module")
def fuzzed(seed: Home, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    with running_backend(seed.copy(tmp_path_factory.mktemp("fuzz"))) as backend:
        yield backend


def _operations(backend: Backend) -> list[Operation]:
    raw = httpx.get(f"{backend.url}/openapi.json", timeout=10, trust_env=False).json()
    schema = schemathesis.openapi.from_dict(raw)
    return [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]


def _fuzz(backend: Backend, operation: Operation, mode: GenerationMode) -> list[str]:
    """Run one route in one mode; returns what broke the rule."""
    broken: list[str] = []
    session = requests.Session()
    session.trust_env = False

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode))
    def run(case: Case[Operation]) -> None:
        response = case.call(base_url=backend.url, session=session, timeout=30)
        text = response.content.decode(errors="replace")
        if response.status_code >= 500 or any(mark in text for mark in TRACEBACK_MARKS):
            broken.append(f"{case.as_curl_command()} -> {response.status_code} {text[:200]}")

    try:
        run()
    except Unsatisfiable:
        pass  # nothing to break in this mode (a route without parameters or body)
    finally:
        session.close()
    return broken


def test_every_route_answers_fuzzed_input_without_5xx_or_traceback(
    fuzzed: Backend, subnormal_floats: None
) -> None:
    operations = _operations(fuzzed)
    paths = {op.path for op in operations}
    assert {"/predict", "/webhook", "/setup", "/versions", "/health"} <= paths, paths
    broken = [
        problem
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for problem in _fuzz(fuzzed, operation, mode)
    ]
    assert broken == [], f"{len(broken)} answers broke the rule:\n" + "\n".join(broken[:10])
    assert fuzzed.process.poll() is None, "the server died under fuzzing"
    assert integrity(fuzzed.home.db) == "ok"
