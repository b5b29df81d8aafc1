"""A reader's view in headless Chromium: log in, open a task, see the pre-labeled BI-RADS box.

Runs after test_label_studio.py (file order) on the same Label Studio. The screenshot is kept
under tests/artifacts/ for a human to look at.
"""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import expect, sync_playwright

from labeler.studio.push import push
from tests.integration.conftest import Stack
from tests.integration.test_label_studio import _tasks

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def test_a_reader_sees_the_prelabel_in_the_browser(stack: Stack) -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"{CHROMIUM} is missing: apt-get install chromium (the README's test command does)"
        )
    push(stack.app, stack.studio, stack.project.id, model_version=stack.version)  # idempotent
    task = _tasks(stack)[-1]  # untouched by the API readers
    reader = stack.readers[0]
    shot = stack.artifacts / "label_studio_task.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{stack.studio.url}/user/login/")
            page.fill("input[name=email]", reader.email)
            page.fill("input[name=password]", reader.password)
            page.click("button[type=submit], input[type=submit]")
            page.wait_for_url(lambda url: "/user/login" not in url, timeout=30_000)
            page.goto(f"{stack.studio.url}/projects/{stack.project.id}/data?task={task['id']}")
            # the region list (outliner), not the label buttons under the image
            region = page.locator(".lsf-outliner-item__title", has_text="BI-RADS 4A")
            expect(region).to_have_count(1, timeout=60_000)  # retried: the page re-renders
            expect(region.first).to_be_visible(timeout=30_000)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
