"""`labeler demo --no-wait` end to end on the bundled sample, as a new user runs it.

One demo run per module (no model registered beforehand: it trains what it shows). Then: what it
printed, that no password reached its output, every dashboard page on its database under AppTest
and in headless Chromium (screenshots in tests/artifacts/), and a second run that reuses it all.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from bench.support.harness import free_port
from core.settings import Settings
from core.text import plural
from db.engine import make_engine, make_session_factory
from db.queries import labels as label_queries
from labeler.cli import app
from labeler.services import start_dashboard
from labeler.studio.server import stop_process
from tests.conftest import isolated_env

runner = CliRunner()
APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
PAGES = ("progress", "agreement", "models", "evaluation", "images", "similar")


@dataclass(frozen=True)
class Demo:
    settings: Settings
    out: dict[str, Any]
    printed: str  # stdout and stderr


def _down(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return True
    return False


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    base = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        (base / "root").mkdir()
        env = isolated_env(base) | {
            "LABELER_STUDIO_URL": f"http://127.0.0.1:{free_port()}",
            "LABELER_BACKEND_URL": f"http://127.0.0.1:{free_port()}",
            "LABELER_DASHBOARD_PORT": str(free_port()),
        }
        for key, value in env.items():
            mp.setenv(key, value)
        result = runner.invoke(app, ["demo", "--no-wait", "--json"])
        assert result.exit_code == 0, result.stderr
        yield Demo(
            Settings(_env_file=None), json.loads(result.stdout), result.stdout + result.stderr
        )


def test_the_demo_shows_every_part_of_the_product(demo: Demo) -> None:
    out = demo.out
    assert out["trained"] is True
    assert out["model_version"].startswith("detector-")
    assert out["splitter"].startswith("detector_no4-") and out["encoder"].startswith("encoder-")
    assert set(out["urls"]) == {"ML backend", "Label Studio", "dashboard"}
    assert out["tasks_created"] > 0 and len(out["logins"]["readers"]) == 3
    for url in out["urls"].values():
        assert _down(url), f"{url} still answers after the demo stopped"
    steps = [line for line in demo.printed.splitlines() if line.startswith("[")]
    for k, name in enumerate(
        ("detector", "splitter", "encoder", "pre-labeled", "AUC", "simulation", "reviews"), 1
    ):
        done = [s for s in steps if s.startswith(f"[{k}/7]") and "usually" not in s]
        assert len(done) == 1 and name in done[0], (k, steps)
    assert "split to 4A/4B" in demo.printed  # the splitter ran on the pre-labels


def test_no_password_reaches_the_demos_output(demo: Demo) -> None:
    secrets_file = demo.settings.home / ".secrets.json"
    assert oct(secrets_file.stat().st_mode & 0o777) == "0o600"
    secrets = json.loads(secrets_file.read_text())
    passwords = [v for k, v in secrets.items() if "password" in k]
    assert len(passwords) == 4  # the admin and three readers
    assert not [p for p in passwords if p in demo.printed]
    assert demo.out["logins"]["passwords"] == str(secrets_file)
    logins = runner.invoke(app, ["studio", "logins", "--json"])
    listed = {row["email"]: row["password"] for row in json.loads(logins.stdout)["logins"]}
    assert sorted(listed.values()) == sorted(passwords)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_has_content_on_the_demo_database(demo: Demo, page: str) -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    # every st.info / st.warning on these pages is an empty state ("No reviews yet", ...)
    assert [i.value for i in at.info] == [] and [w.value for w in at.warning] == []
    assert len(at.get("vega_lite_chart")) + len(at.dataframe) > 0


CONTENT = ", ".join(
    f'[data-testid="{t}"]'
    for t in ("stMetric", "stVegaLiteChart", "stDataFrame", "stTable", "stImage")
)


PENDING = ("stStatusWidget", "stSkeleton")  # the script still running; a chart not drawn yet


def rendered(page: Page) -> None:
    """Wait until the page's script has finished (Streamlit's running indicator is gone) and
    every chart has drawn (no skeleton left): screenshots taken at "networkidle" caught pages
    half run, their charts grey placeholders."""
    main = page.locator('[data-testid="stMainBlockContainer"]')
    main.locator('[data-testid="stHeading"]').first.wait_for(timeout=60_000)
    # The heading can draw before the script's first element below it, with no running
    # indicator in between (a rerun): wait for content, or an alert or error, to appear.
    settled = f'{CONTENT}, [data-testid="stAlert"], [data-testid="stException"]'
    with contextlib.suppress(PlaywrightTimeoutError):  # the caller's assertions say what is wrong
        main.locator(settled).first.wait_for(timeout=60_000)
    busy = " || ".join(f"document.querySelector('[data-testid=\"{t}\"]')" for t in PENDING)
    page.wait_for_function(f"() => !({busy})", timeout=60_000)


def test_screenshots_of_every_page_show_content(demo: Demo) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    service = start_dashboard(demo.settings, demo.settings.home / "logs")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            for name in PAGES:
                page.goto(f"{service.url}/{'' if name == PAGES[0] else name}")  # 1st page: /
                shot = ARTIFACTS / f"demo_{name}.png"
                rendered(page)
                page.screenshot(path=str(shot), full_page=True)
                body = page.locator('[data-testid="stMain"]')
                assert body.locator('[data-testid="stException"]').count() == 0, name
                assert body.locator('[data-testid="stAlert"]').count() == 0, name
                shown = body.locator(CONTENT).count()
                assert shown > 0, f"{name}: no metric, chart, table or image"
                assert shot.stat().st_size > 20_000, name
            browser.close()
    finally:
        if service.process is not None:
            stop_process(service.process)


def test_a_second_run_reuses_everything(demo: Demo) -> None:
    """Only the images the simulated readers rejected get a task: their next round's."""
    with make_session_factory(make_engine(demo.settings.db_url))() as session:
        rejected = label_queries.label_counts(session).get("rejected", 0)
    again = runner.invoke(app, ["demo", "--no-wait"])
    assert again.exit_code == 0, again.stderr
    finished = [s for s in again.stderr.splitlines() if s.startswith("[") and "usually" not in s]
    assert len(finished) == 7 and all("reused" in line for line in finished), finished
    assert "(0 added, 62 already present)" in again.stdout
    assert f"({plural(rejected, 'new task')})" in again.stdout and rejected > 0
    assert "`labeler studio logins` prints them" in again.stdout
    passwords = json.loads((demo.settings.home / ".secrets.json").read_text()).values()
    assert not [p for p in passwords if p in again.stdout + again.stderr]
