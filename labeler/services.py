"""The local services the demo runs: ML backend, Label Studio, dashboard; each a child process.

All bind to 127.0.0.1 and are stopped by process id (their process group), never by name.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx

from db.settings import Settings
from labeler.studio.server import start_studio, stop_process, wait_until_up

DASHBOARD_APP = Path(__file__).resolve().parent.parent / "dashboards" / "app.py"


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
    process = _spawn(cmd, log_dir / "ml-backend.log", settings)
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
    if not DASHBOARD_APP.is_file():
        raise FileNotFoundError(f"dashboard app {DASHBOARD_APP} is missing")
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(DASHBOARD_APP),
        "--server.headless=true",
        "--server.address=127.0.0.1",
        f"--server.port={settings.dashboard_port}",
        "--browser.gatherUsageStats=false",
    ]
    process = _spawn(cmd, log_dir / "dashboard.log", settings)
    wait_until_up(f"{url}/_stcore/health", process, timeout=120, log=log_dir / "dashboard.log")
    return Service("dashboard", url, process)


def _spawn(cmd: list[str], log: Path, settings: Settings) -> subprocess.Popen[bytes]:
    import os

    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LABELER_HOME": str(settings.home), "LABELER_DB_URL": settings.db_url}
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
