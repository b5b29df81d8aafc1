"""deploy/: the systemd units, rendered for this checkout, pass `systemd-analyze verify`, bind
127.0.0.1, are hardened, and give Label Studio the environment labeler/studio/server.py gives it;
the environment template describes a PostgreSQL site the settings accept."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from unittest import mock
from urllib.parse import urlparse

import pytest

from core.settings import Settings
from labeler.studio.server import studio_env

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy"
SERVERS = ("labeler-backend.service", "labeler-dashboard.service", "labeler-studio.service")
JOBS = ("labeler-retrain.service", "labeler-sync.service")  # started by their timers
SERVICES = (*SERVERS, *JOBS)
TIMERS = ("labeler-retrain.timer", "labeler-sync.timer")
INSTALL_HINT = (
    "systemd-analyze is missing: install systemd (Debian/Ubuntu: apt-get install systemd) so "
    "the units in deploy/ can be verified"
)

Entry = tuple[str, str, str]  # section, key, value


@dataclass(frozen=True)
class Rendered:
    units: Path
    home: Path
    env_file: Path

    def unit(self, name: str) -> list[Entry]:
        return _entries(self.units / name)

    def paths(self) -> list[str]:
        return [str(self.units / name) for name in (*SERVICES, *TIMERS)]


def _entries(path: Path) -> list[Entry]:
    """A unit file's assignments in order (systemd allows a key more than once)."""
    section, found = "", []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.append((section, key, value))
    return found


def _one(entries: list[Entry], key: str) -> str:
    values = [value for _, k, value in entries if k == key]
    assert len(values) == 1, (key, values)
    return values[0]


def _env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v for k, v in pairs if not k.lstrip().startswith("#")}


def _unit_environment(entries: list[Entry]) -> dict[str, str]:
    """Environment= lines as one mapping (each line may set several variables)."""
    lines = [value for _, key, value in entries if key == "Environment"]
    items = [item.partition("=") for line in lines for item in shlex.split(line)]
    return {name: setting for name, _, setting in items}


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail(INSTALL_HINT)
    return found


@pytest.fixture
def rendered(tmp_path: Path) -> Rendered:
    """The units rendered by deploy/render.sh with this checkout's paths and a temp home."""
    home = tmp_path.resolve() / "home"
    env_file = tmp_path / "labeler.env"
    text = (DEPLOY / "labeler.env.example").read_text()
    env_file.write_text(re.sub(r"(?m)^LABELER_HOME=.*$", f"LABELER_HOME={home}", text))
    units = tmp_path / "units"
    done = subprocess.run(
        ["bash", str(DEPLOY / "render.sh"), str(env_file), str(units)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in units.iterdir()) == sorted((*SERVICES, *TIMERS))
    return Rendered(units, home, env_file.resolve())


def test_the_units_pass_systemd_analyze_verify(rendered: Rendered) -> None:
    done = subprocess.run(
        [_systemd_analyze(), "verify", *rendered.paths()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ours = [line for line in done.stderr.splitlines() if "labeler-" in line]
    assert ours == [], done.stderr  # no unknown key, bad value or unsafe setting in our units
    for name in (*SERVICES, *TIMERS):
        assert "@" not in _one(rendered.unit(name), "Documentation"), name  # all filled in


def test_verify_does_catch_a_unit_whose_program_is_missing(rendered: Rendered) -> None:
    """The check above is worth something: a wrong ExecStart path fails it."""
    backend = rendered.units / "labeler-backend.service"
    backend.write_text(backend.read_text().replace("/bin/labeler ", "/bin/labeler-missing "))
    done = subprocess.run(
        [_systemd_analyze(), "verify", str(backend)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and "labeler-missing" in done.stderr, done.stderr


def test_every_service_runs_hardened_as_the_labeler_user(rendered: Rendered) -> None:
    for name in SERVICES:
        unit = rendered.unit(name)
        program = Path(shlex.split(_one(unit, "ExecStart"))[0])
        assert program.is_file() and program.is_relative_to(ROOT), (name, program)
        assert _one(unit, "EnvironmentFile") == str(rendered.env_file), name
        assert _one(unit, "WorkingDirectory") == str(rendered.home), name
        expected = {
            "User": "labeler",
            "Group": "labeler",
            "NoNewPrivileges": "yes",
            "ProtectSystem": "strict",
            "ReadWritePaths": str(rendered.home),
            "PrivateTmp": "yes",
        }
        assert {key: _one(unit, key) for key in expected} == expected, name


def test_servers_and_the_retrain_job_restart_on_failure(rendered: Rendered) -> None:
    """The sync job does not: its timer runs it again within 10 minutes."""
    for name in (*SERVERS, "labeler-retrain.service"):
        assert _one(rendered.unit(name), "Restart") == "on-failure", name
    assert not [k for _, k, _ in rendered.unit("labeler-sync.service") if k == "Restart"]


@pytest.mark.parametrize("name", SERVERS)
def test_every_server_binds_loopback_only(rendered: Rendered, name: str) -> None:
    argv = shlex.split(_one(rendered.unit(name), "ExecStart"))
    flag = "--internal-host" if name == "labeler-studio.service" else "--host"
    assert argv[argv.index(flag) + 1] == "127.0.0.1"
    assert "0.0.0.0" not in argv and "--port" in argv


@pytest.mark.parametrize(
    ("job", "argv", "every_s"),
    [
        ("labeler-retrain", ["retrain", "--json"], 24 * 3600),
        ("labeler-sync", ["sync", "--json"], 600),
    ],
)
def test_each_job_runs_from_its_timer(
    rendered: Rendered, job: str, argv: list[str], every_s: int
) -> None:
    service, timer = rendered.unit(f"{job}.service"), rendered.unit(f"{job}.timer")
    assert _one(service, "Type") == "oneshot"
    assert shlex.split(_one(service, "ExecStart"))[1:] == argv
    assert _one(timer, "Unit") == f"{job}.service"
    assert _one(timer, "Persistent") == "true"
    assert ("Install", "WantedBy", "timers.target") in timer
    done = subprocess.run(
        [_systemd_analyze(), "calendar", "--iterations=2", _one(timer, "OnCalendar")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    runs = [_elapse(line) for line in done.stdout.splitlines() if re.search(r"Next|Iter", line)]
    assert len(runs) == 2 and (runs[1] - runs[0]).total_seconds() == every_s, done.stdout


def _elapse(line: str) -> datetime:
    """'  Next elapse: Tue 2026-12-08 02:30:00 UTC' -> the wall-clock time."""
    match = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", line)
    assert match is not None, line
    return datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S")


def test_the_environment_template_is_a_postgresql_site_the_settings_accept(
    rendered: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env_file(rendered.env_file)
    assert env["LABELER_DB_URL"].startswith("postgresql+psycopg://")
    assert env["DJANGO_DB"] == "default"
    for key in ("NAME", "USER", "PASSWORD", "HOST", "PORT"):
        assert env[f"POSTGRE_{key}"], key
    assert env["LABEL_STUDIO_USER_TOKEN"] == env["LABELER_STUDIO_TOKEN"]
    for service, url in (("BACKEND", "LABELER_BACKEND_URL"), ("STUDIO", "LABELER_STUDIO_URL")):
        assert urlparse(env[url]).port == int(env[f"LABELER_{service}_PORT"]), url
    used = {v for name in SERVICES for v in re.findall(r"\$\{(\w+)\}", _unit_text(rendered, name))}
    assert used and used <= env.keys(), used - env.keys()
    for key in [k for k in os.environ if k.startswith("LABELER_")]:
        monkeypatch.delenv(key)
    settings = Settings(_env_file=rendered.env_file)  # a typo'd value fails validation here
    assert settings.db_url == env["LABELER_DB_URL"] and settings.home == rendered.home
    assert settings.backend_auth == "basic" and settings.backend_password is not None
    assert settings.dashboard_port == int(env["LABELER_DASHBOARD_PORT"])
    assert env["LABEL_STUDIO_USERNAME"] == settings.studio_admin_email


def _unit_text(rendered: Rendered, name: str) -> str:
    return (rendered.units / name).read_text()


def test_label_studio_gets_the_environment_the_demo_starts_it_with(rendered: Rendered) -> None:
    """Every variable server.py sets: a fixed value in the unit, a secret in the env file."""
    settings = Settings(_env_file=None, home=rendered.home)
    with mock.patch.dict(os.environ, clear=True):
        demo = studio_env(settings)
    unit = rendered.unit("labeler-studio.service")
    in_unit, in_file = _unit_environment(unit), _env_file(rendered.env_file)
    fixed = demo.keys() & in_unit.keys()
    assert {k: in_unit[k] for k in fixed} == {k: demo[k] for k in fixed}
    site = demo.keys() - fixed  # the account and the secrets: each site sets its own
    assert site == {
        "LABEL_STUDIO_USERNAME",
        "LABEL_STUDIO_PASSWORD",
        "LABEL_STUDIO_USER_TOKEN",
        "SECRET_KEY",
    }
    assert site <= in_file.keys(), site - in_file.keys()
    argv = shlex.split(_one(unit, "ExecStart"))
    assert Path(argv[0]) == ROOT / ".venv-ls" / "bin" / "label-studio"
    assert argv[1:] == [
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--port",
        "${LABELER_STUDIO_PORT}",
    ]
