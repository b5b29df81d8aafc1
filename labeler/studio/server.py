"""Start and stop a local Label Studio (SQLite under LABELER_HOME) for the demo and the tests.

Label Studio runs from its own virtualenv (`.venv-ls`, see README) because its pins clash with
ours. Everything it needs for an unattended start comes from environment variables; it binds to
127.0.0.1 only and is stopped by its process id.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx

from core.errors import BadInputError, StudioError
from core.settings import Settings


class StudioNotInstalledError(StudioError):
    """No label-studio executable where we look; the message says how to install it."""


class ServiceStartError(StudioError):
    """A service we started exited or did not answer its health check in time."""


@dataclass
class StudioProcess:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self, timeout: float = 20.0) -> None:
        stop_process(self.process, timeout)


def studio_executable(settings: Settings) -> Path:
    """settings.studio_bin, else `label-studio` on PATH, else .venv-ls next to our venv."""
    candidates = [settings.studio_bin] if settings.studio_bin else []
    candidates += [shutil.which("label-studio") or ""]
    candidates += [str(Path(sys.prefix).parent / ".venv-ls" / "bin" / "label-studio")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise StudioNotInstalledError(
        "label-studio is not installed: run `python3 -m venv .venv-ls && "
        ".venv-ls/bin/pip install 'label-studio==1.23.*'` (or set LABELER_STUDIO_BIN)"
    )


def studio_env(settings: Settings) -> dict[str, str]:
    """The variables for an unattended, local-only start (see README: Label Studio)."""
    data_dir = settings.home / "studio"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        LABEL_STUDIO_USERNAME=settings.studio_admin_email,
        LABEL_STUDIO_PASSWORD=settings.secret("studio_admin_password"),
        LABEL_STUDIO_USER_TOKEN=settings.studio_api_token(),
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LABEL_STUDIO_ML_BLOCK_LOCAL_IP="false",
        LABEL_STUDIO_SSRF_PROTECTION_ENABLED="false",
        LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
        LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(settings.home),
        LABEL_STUDIO_LATEST_VERSION_CHECK="false",
        LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
        SECRET_KEY=settings.secret("studio_django_secret"),
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        COLLECT_ANALYTICS="false",
    )
    return env


STUDIO_DB = "label_studio.sqlite3"  # Label Studio's database under LABEL_STUDIO_BASE_DATA_DIR
MIGRATED = Path("migrated") / STUDIO_DB  # under its virtualenv: scripts/setup.sh makes it


def seed_database(executable: Path, data_dir: Path) -> bool:
    """Start a new home from the empty database setup.sh migrated once beside Label Studio,
    instead of a minute of migrations on its first start (it applies any the copy lacks).
    Owner-only: the database will hold the readers' password hashes."""
    target = data_dir / STUDIO_DB
    template = executable.parent.parent / MIGRATED
    if target.exists() or not template.is_file():
        return False
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = target.with_name(f".{STUDIO_DB}.partial")
    shutil.copyfile(template, partial)
    partial.chmod(0o600)
    partial.replace(target)
    return True


def start_studio(settings: Settings, *, timeout: float = 240.0) -> StudioProcess:
    """Start Label Studio and wait until it answers (a new home without the migrated template
    migrates for about a minute first)."""
    url = settings.studio_url.rstrip("/")
    parsed = urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        raise BadInputError(f"only a local Label Studio can be started, not {url}")
    log = settings.home / "logs" / "label-studio.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    executable = studio_executable(settings)
    seed_database(executable, settings.home / "studio")
    cmd = [
        str(executable),
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(parsed.port or 8080),
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(
            cmd,
            env=studio_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=settings.home,
            start_new_session=True,
        )
    try:
        wait_until_up(f"{url}/health", process, timeout=timeout, log=log)
    except BaseException:
        stop_process(process)
        raise
    return StudioProcess(process, url, log)


def wait_until_up(
    health_url: str, process: subprocess.Popen[bytes] | None, *, timeout: float, log: Path | None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServiceStartError(
                f"a service did not start: {health_url}: process exited "
                f"({process.returncode}); see {log}"
            )
        try:
            if httpx.get(health_url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise ServiceStartError(
        f"a service did not start: {health_url} did not answer within {timeout:.0f} s; see {log}"
    )


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM the process group by pid, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
    except ProcessLookupError:
        pass
