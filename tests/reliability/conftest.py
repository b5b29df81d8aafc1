"""Fixtures for the reliability tests: one seeded home per session, real `labeler serve` processes.

`seed` is built once (import, random detector, half the images pre-labeled); every server runs
over its own copy, on a free 127.0.0.1 port, and is stopped by its pid in a finally. `backend` is
shared by the tests that leave the home as they found it; the tests that may damage a home (or
need other settings) start their own through `fresh_home` and `running_backend`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.support.harness import (
    BIG,
    BIG_CHUNKED,
    HUGE,
    MAX_DOWNLOAD,
    UPLOAD,
    Backend,
    Home,
    build_seed,
    huge_png,
    images,
    running_backend,
)
from bench.support.loopback import Loopback, Reply, fixed, serving


@pytest.fixture(scope="session")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return build_seed(tmp_path_factory.mktemp("seed"))


@pytest.fixture
def fresh_home(seed: Home, tmp_path: Path) -> Home:
    return seed.copy(tmp_path / "copy")


@pytest.fixture(scope="package")
def studio_files(seed: Home) -> Iterator[Loopback]:
    """Label Studio's file server as the backend sees it: the last image's PNG as an upload, a
    decompression bomb, and two 300 MB downloads."""
    png = (seed.home / images(seed)[-1][1]).read_bytes()
    signature = b"\x89PNG\r\n\x1a\n"
    routes = {
        UPLOAD: fixed(Reply(200, png, "image/png")),
        HUGE: fixed(Reply(200, huge_png(), "image/png")),
        BIG: fixed(Reply(200, signature, "image/png", stream=300 * 1024 * 1024)),
        BIG_CHUNKED: fixed(
            Reply(200, signature, "image/png", stream=300 * 1024 * 1024, declare=False)
        ),
    }
    with serving(routes) as server:
        yield server


@pytest.fixture(scope="package")
def backend(
    seed: Home, studio_files: Loopback, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """The shared server: Label Studio at `studio_files`, at most 2 cache misses per request,
    downloads capped at 4 MB."""
    home = seed.copy(tmp_path_factory.mktemp("shared"))
    env = {
        "LABELER_STUDIO_URL": studio_files.url,
        "LABELER_PREDICT_MAX_MISSES": "2",
        "LABELER_MAX_DOWNLOAD_BYTES": str(MAX_DOWNLOAD),
    }
    with running_backend(home, env) as server:
        yield server
