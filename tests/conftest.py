"""Shared fixtures: an isolated LABELER_HOME and data root per test, real SQLite files."""

from __future__ import annotations

import errno
import fnmatch
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import xdist
from sqlalchemy.orm import Session, sessionmaker

from bench.support.samples import copy_sample as copy_sample
from core.settings import Settings
from db import migrate
from db.engine import make_engine, make_session_factory
from labeler.sample import SAMPLE_ROOT
from tests.postgres import PostgresServer, postgres_server

BUNDLED = SAMPLE_ROOT  # the real samples `labeler demo` ships (labeler/sample_data)
TESTS = Path(__file__).parent
# The default run splits the tests over worker processes (pytest-xdist, `--dist loadfile`): a
# module runs on one worker, so its module-scoped fixtures (a trained model) are built once.
# (`--dist loadgroup` would also keep a package together, but xdist 3.8 marks its groups through
# a node attribute pytest 9 no longer reads, so every test went anywhere and each worker built
# the module fixtures again: the demo ran twice.) A package-scoped fixture (integration's Label
# Studio) is built once per worker that runs one of its modules.
SHARED_BY_PACKAGE = ("integration",)  # ranked as one group below
# The longest groups start first, so the workers finish together instead of one waiting on a
# late multi-minute module (measured: `pytest --durations=0`).
# Re-ranked strictly by the figures below (detector CLI before DDP, simulate after the
# integration package), two fresh-clone runs took 667 and 704 s: this order stays.
LONG_FIRST = (  # test-seconds in a fresh-clone run at e74bb87 (this order: 599.9 s there)
    "labeler/test_demo.py",  # 135
    "labeler/test_retrain.py",  # 105
    "ml_backend/training/test_distributed.py",  # 74
    "labeler/test_detector_cli.py",  # 76
    "labeler/test_simulate.py",  # 33
    "integration",  # 62
    "test_code_quality.py",  # 46 (mypy without its cache)
    "reliability/test_kill.py",  # 41
    "labeler/test_predict_pool.py",  # 20
    "bench/test_detector_speed.py",  # 34
    "labeler/test_disk_full.py",  # 29
)


def _group(item: pytest.Item) -> str:
    relative = item.path.relative_to(TESTS)
    return str(relative.parent if relative.parts[0] in SHARED_BY_PACKAGE else relative)


def _rank(group: str) -> int:
    return LONG_FIRST.index(group) if group in LONG_FIRST else len(LONG_FIRST)


# Issue 16: the tests in these files that use the `settings` database run on SQLite and on
# PostgreSQL, as do the tests marked `both_backends` elsewhere; `sqlite_only` opts one out.
BOTH_BACKENDS = ("db/*", "dashboards/*", "labeler/test_import_*", "labeler/studio/test_sync*")
BACKENDS = ("sqlite", "postgresql")
MARKERS = (
    "both_backends: run on SQLite and on PostgreSQL (the `settings` database)",
    "sqlite_only: run on SQLite only (a test of the SQLite file, or too slow to run twice)",
    "no_schema: the PostgreSQL database starts without the schema, as a new SQLite file does",
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    definition = metafunc.definition
    if "db_backend" not in metafunc.fixturenames or definition.get_closest_marker("sqlite_only"):
        return
    relative = definition.path.relative_to(TESTS).as_posix()
    both = any(fnmatch.fnmatch(relative, pattern) for pattern in BOTH_BACKENDS)
    if both or definition.get_closest_marker("both_backends"):
        metafunc.parametrize("db_backend", BACKENDS, indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: _rank(_group(item)))  # stable: file order within a rank


def pytest_configure(config: pytest.Config) -> None:
    """Each worker's torch (and the CLIs it spawns) gets its share of the cores: torch takes
    every core per process, and two workers spinning on both cores run slower than one."""
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)


def pytest_sessionstart(session: pytest.Session) -> None:
    """The test run is an entry point like the `labeler` CLI: flush-to-zero for the process, as
    `labeler.cli.run` sets it (random-init models produce denormals; they slow CPU steps 2-8x).
    Not in pytest-xdist's controller: it hands the tests to its workers and runs none, so it need
    not load torch (3 s before the workers start)."""
    if xdist.is_xdist_controller(session):
        return
    from ml_backend.runtime import flush_denormals

    flush_denormals()


@pytest.fixture(autouse=True)
def _ieee_floats(request: pytest.FixtureRequest) -> Iterator[None]:
    """The session turns on flush-to-zero for the whole process (faster training), and
    Hypothesis then refuses to draw floats: its tests run with IEEE subnormals, then as before."""
    torch = sys.modules.get("torch")
    hypothesis_test = getattr(request.function, "is_hypothesis_test", False)
    was_on = sys.float_info.min / 2 == 0.0
    if torch is not None and hypothesis_test:
        torch.set_flush_denormal(False)
    yield
    if torch is not None and hypothesis_test and was_on:
        torch.set_flush_denormal(True)


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


def isolated_env(base: Path) -> dict[str, str]:
    """LABELER_* for a home at base/home and a data root at base/root, as every test sets them
    (module- and session-scoped fixtures too, so their imports cost what a test's do)."""
    return {
        "LABELER_HOME": str(base / "home"),
        "LABELER_DATA_ROOT": str(base / "root"),
        "LABELER_ID_SALT": "test-salt-not-secret",
        # In-process conversion: two spawned workers cost ~1.5 CPU-s per import, more than the
        # bundled sample's 62 images take. The pool has its own tests (test_import_datasets).
        "LABELER_IMPORT_WORKERS": "1",
        "LABELER_DB_URL": "",
        "LABELER_OCR": "off",  # 0.2 s per image; the PHI tests switch it on
        # Measuring the int8/bf16 paths after each promotion: test_retrain's promotion test and
        # `labeler models optimize`'s own tests switch it on.
        "LABELER_RETRAIN_OPTIMIZE": "false",
    }


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server per test process (xdist worker), started on first use."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of this test's own: a copy of the migrated template (`no_schema`: empty)."""
    url = postgres.create_database(migrated=request.node.get_closest_marker("no_schema") is None)
    yield url
    postgres.drop_database(url)


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    """The database behind `settings`: sqlite unless pytest_generate_tests parametrised it."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def settings(
    tmp_path: Path,
    data_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    db_backend: str,
    request: pytest.FixtureRequest,
) -> Settings:
    """Settings for one test; also exported as LABELER_* so CLI invocations see the same."""
    for key, value in isolated_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    if db_backend == "postgresql":
        monkeypatch.setenv("LABELER_DB_URL", request.getfixturevalue("postgres_url"))
    return Settings(_env_file=None)


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.db_url)
    migrate.upgrade(engine)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def busbra_dir(data_root: Path) -> Path:
    return copy_sample("busbra_mini", data_root)


@pytest.fixture
def breast_dir(data_root: Path) -> Path:
    return copy_sample("breast_lesions_usg_mini", data_root)


@pytest.fixture
def small_disk() -> Iterator[Callable[[Path, str], Path]]:
    """Mount a small tmpfs at a path, to fill it for real (disk-full tests). Needs root; a
    refused mount fails the test with the reason, it never skips. Unmounted at teardown."""
    mounted: list[Path] = []

    def mount(path: Path, size: str = "2m") -> Path:
        path.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                capture_output=True,
                text=True,
                check=False,
            )
        except FileNotFoundError:
            pytest.fail("disk-full tests mount a small tmpfs: the `mount` command is missing")
        if done.returncode != 0:
            pytest.fail(
                "disk-full tests mount a small tmpfs and must run as root (CAP_SYS_ADMIN); "
                f"mount said: {done.stderr.strip() or done.returncode}"
            )
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_disk(folder: Path) -> None:
    """Write zeros under `folder` until its file system says ENOSPC."""
    fd = os.open(folder / ".filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, bytes(1 << 16))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
