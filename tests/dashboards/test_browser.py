"""The real thing: `labeler dashboard`'s command line serves the app; headless Chromium opens the
evaluation page and finds the confusion matrix drawn, cell by cell, as the database holds it.

The screenshot is kept in tests/artifacts/ for CI to collect.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bench.support.harness import free_port
from core.settings import Settings
from db.models import Evaluation
from labeler.cli.dashboard import app_path, streamlit_command
from tests.dashboards.seed import Plan

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
CELL = re.compile(r"predicted: (\w+); truth: (\w+); value: (\d+)")


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"streamlit did not answer within 60 s:\n{log.read_text()[-2000:]}")


@pytest.fixture
def server(seeded: Plan, settings: Settings, tmp_path: Path) -> Iterator[str]:
    """The app as `labeler dashboard` starts it, on a free loopback port; stopped by pid."""
    port = free_port()
    argv, env = streamlit_command(settings, host="127.0.0.1", port=port)
    assert argv[3:5] == ["run", str(app_path())] and "--server.headless" in argv
    log = tmp_path / "streamlit.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield url
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def drawn_cells(page: Page, title: str) -> dict[tuple[str, str], int]:
    """(truth, predicted) -> count, read from the SVG marks of the chart titled `title`."""
    chart = page.locator('[data-testid="stVegaLiteChart"]', has_text=title)
    chart.locator('[aria-roledescription="rect mark"]').first.wait_for(timeout=30_000)
    labels = chart.locator('[aria-roledescription="rect mark"]').evaluate_all(
        "marks => marks.map(m => m.getAttribute('aria-label'))"
    )
    cells = {}
    for label in labels:
        match = CELL.fullmatch(str(label))
        assert match, label
        cells[(match[2], match[1])] = int(match[3])
    return cells


@pytest.mark.sqlite_only  # a real browser: too slow to run twice (AppTest covers PostgreSQL)
def test_evaluation_page_draws_the_confusion_matrix(
    server: str, sessions: sessionmaker[Session]
) -> None:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install the system Chromium (apt install chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard_evaluation.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(f"{server}/evaluation")
            cells = drawn_cells(page, "BI-RADS confusion matrix: counts")
            chosen = page.get_by_role("combobox", name="Evaluation").input_value()
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    print(f"screenshot: {shot}")
    version = re.search(r"(\S+)( \(active\))? · ", chosen)
    assert version, chosen
    with sessions() as s:
        stored = s.scalars(
            select(Evaluation.metrics).where(Evaluation.model_version_id == version[1])
        ).one()
    labels, counts = stored.birads.matrix.labels, stored.birads.matrix.counts
    assert cells == {
        (truth, pred): counts[i][j]
        for i, truth in enumerate(labels)
        for j, pred in enumerate(labels)
    }
    assert shot.stat().st_size > 10_000
