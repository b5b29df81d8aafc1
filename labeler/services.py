"""The local services the demo runs: ML backend, Label Studio, dashboard; each a child process.

All bind to 127.0.0.1 and are stopped by process id (their process group), never by name.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlparse

import httpx

from core.errors import BadInputError
from core.settings import Settings
from labeler.studio.server import start_studio, stop_process, wait_until_up


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen[bytes] | None  # None: it was already running, we leave it be


@dataclass
class Services:
    running: list[Service] = field(default_factory=list)

    def stop(self) -> None:
        for service in reversed(self.running):
            if service.process is not None:
                stop_process(service.process)


def is_up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def start_backend(settings: Settings, log_dir: Path) -> Service:
    url = settings.backend_url.rstrip("/")
    if is_up(f"{url}/health"):
        return Service("ML backend", url, None)
    port = urlparse(url).port or 9090
    cmd = [sys.executable, "-m", "labeler.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = _spawn(cmd, log_dir / "ml-backend.log", _env(settings))
    wait_until_up(f"{url}/health", process, timeout=120, log=log_dir / "ml-backend.log")
    return Service("ML backend", url, process)


def start_label_studio(settings: Settings) -> Service:
    url = settings.studio_url.rstrip("/")
    if is_up(f"{url}/health"):
        return Service("Label Studio", url, None)
    studio = start_studio(settings)
    return Service("Label Studio", url, studio.process)


def start_dashboard(settings: Settings, log_dir: Path) -> Service:
    url = f"http://127.0.0.1:{settings.dashboard_port}"
    if is_up(f"{url}/_stcore/health"):
        return Service("dashboard", url, None)
    cmd, env = streamlit_command(settings, host="127.0.0.1", port=settings.dashboard_port)
    process = _spawn(cmd, log_dir / "dashboard.log", env)
    wait_until_up(f"{url}/_stcore/health", process, timeout=120, log=log_dir / "dashboard.log")
    return Service("dashboard", url, process)


def _env(settings: Settings) -> dict[str, str]:
    """Children read the same database and files, wherever their `.env` would lead."""
    return os.environ | {
        "LABELER_HOME": str(settings.home),
        "LABELER_DB_URL": settings.db_url,
        "LABELER_DATA_ROOT": str(settings.data_root),
    }


class DashboardsMissingError(BadInputError):
    """The `dashboards` package is not installed beside the labeler."""


def app_path() -> Path:
    """dashboards/app.py, found without importing `dashboards` (nothing imports it)."""
    spec = find_spec("dashboards")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        if (Path(folder) / "app.py").is_file():
            return Path(folder) / "app.py"
    raise DashboardsMissingError("the dashboards package is not installed (dashboards/app.py)")


def streamlit_command(
    settings: Settings, *, host: str, port: int
) -> tuple[list[str], dict[str, str]]:
    """Command line and environment: headless, no usage statistics, no developer menu."""
    argv = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path()),
        "--server.headless",
        "true",
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]
    return argv, _env(settings)


def _spawn(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
