"""A reader's view in headless Chromium: log in, open a task, see the pre-labeled BI-RADS box.

It shares the Label Studio of test_label_studio.py but pushes into a project of its own, so it
neither needs nor changes the state those tests build step by step: any file order works. The
screenshot is kept under tests/artifacts/ for a human to look at.
"""

from __future__ import annotations

import shutil
from typing import Any, cast

import pytest
from playwright.sync_api import expect, sync_playwright

from labeler.studio.project import ProjectInfo, ensure_project
from labeler.studio.push import push
from ml_backend.studio.similar import similar_region
from tests.integration.conftest import Stack

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def _own_project(stack: Stack) -> ProjectInfo:
    """The same bootstrap and push as the shared project, under another title (idempotent)."""
    title = f"{stack.settings.studio_project} (browser)"
    project = ensure_project(
        stack.studio, stack.settings.model_copy(update={"studio_project": title})
    )
    push(stack.app, stack.studio, project.id, model_version=stack.version)
    return project


def test_a_reader_sees_the_prelabel_in_the_browser(stack: Stack) -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"{CHROMIUM} is missing: apt-get install chromium (the README's test command does)"
        )
    project = _own_project(stack)
    tasks: list[Any] = stack.studio.call(
        lambda: list(stack.studio.sdk.tasks.list(project=project.id, page_size=1000))
    )
    task_ids = [int(t.id) for t in tasks]
    assert task_ids, "the push created no task"
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
            page.goto(f"{stack.studio.url}/projects/{project.id}/data?task={min(task_ids)}")
            # the region list (outliner), not the label buttons under the image
            region = page.locator(".lsf-outliner-item__title", has_text="BI-RADS 4A")
            expect(region).to_have_count(1, timeout=60_000)  # retried: the page re-renders
            expect(region.first).to_be_visible(timeout=30_000)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def _login(page: Any, stack: Stack) -> None:
    reader = stack.readers[0]
    page.goto(f"{stack.studio.url}/user/login/")
    page.fill("input[name=email]", reader.email)
    page.fill("input[name=password]", reader.password)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(lambda url: "/user/login" not in url, timeout=30_000)


def _task_with_similar(stack: Stack, project_id: int, like: Any) -> int:
    """A copy of a pushed task whose prediction carries the read-only similar-lesions text."""
    pushed = like.predictions[0]
    region = similar_region([], encoder_version="encoder-test").body()
    prediction = {"result": [*pushed.result, region], "model_version": pushed.model_version}
    body = [{"data": dict(like.data), "predictions": [prediction]}]
    stack.studio.call(
        lambda: stack.studio.sdk.projects.import_tasks(project_id, request=cast(Any, body))
    )
    tasks: list[Any] = stack.studio.call(
        lambda: list(stack.studio.sdk.tasks.list(project=project_id, page_size=1000))
    )
    return max(int(t.id) for t in tasks)


def test_the_review_choice_is_on_screen_and_similar_lesions_are_display_only(
    stack: Stack,
) -> None:
    title = f"{stack.settings.studio_project} (layout)"
    project = ensure_project(
        stack.studio, stack.settings.model_copy(update={"studio_project": title})
    )
    push(stack.app, stack.studio, project.id, model_version=stack.version)
    tasks: list[Any] = stack.studio.call(
        lambda: list(stack.studio.sdk.tasks.list(project=project.id, page_size=1000, fields="all"))
    )
    plain = min(int(t.id) for t in tasks)
    with_similar = _task_with_similar(stack, project.id, next(t for t in tasks if t.predictions))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            _login(page, stack)
            for task_id, shot in ((plain, "layout_task.png"), (with_similar, "similar_task.png")):
                page.goto(f"{stack.studio.url}/projects/{project.id}/data?task={task_id}")
                choice = page.locator(".lsf-choice", has_text="Pre-label correct")
                expect(choice).to_be_visible(timeout=60_000)
                for name in ("Pre-label correct", "Corrected", "Reject"):
                    # wholly on screen without scrolling; retried while the task still renders
                    # (a one-shot bounding_box() read None mid-render)
                    item = page.locator(".lsf-choice", has_text=name)
                    expect(item).to_be_in_viewport(ratio=1.0, timeout=60_000)
                similar = page.locator(".birads-similar")
                expect(similar).to_have_count(1)
                for control in ("textarea", "button", "input"):
                    assert similar.locator(f"{control}:visible").count() == 0, control
                assert "submission" not in similar.inner_text().lower()
                page.screenshot(path=str(stack.artifacts / shot))
            expect(similar.get_by_text("none indexed yet", exact=False)).to_be_visible()
        finally:
            browser.close()
