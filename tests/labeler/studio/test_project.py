"""`labeler studio setup` installs exactly the label config `labeler studio config` prints,
updates an existing project's config, and keeps one "Queue" tab sorted by the queue rank."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from core.settings import Settings
from labeler.cli import app
from labeler.studio.project import QUEUE_ORDERING, QUEUE_VIEW

runner = CliRunner()


@dataclass
class _ProjectStudio:
    """The calls ensure_project makes; records what it sends."""

    existing: list[Any] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    views: list[Any] = field(default_factory=list)
    hooks: list[Any] = field(default_factory=list)
    hook_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def _hook(self, kind: str, **options: Any) -> Any:
        self.hook_calls.append((kind, options))
        return SimpleNamespace(id=1)

    def call(self, fn: Any) -> Any:
        return fn()

    def _create(self, **options: Any) -> Any:
        self.sent.append(options)
        return SimpleNamespace(id=7)

    def _update(self, id: int, **options: Any) -> Any:
        self.sent.append(options)
        return SimpleNamespace(id=id)

    def _view(self, data: Any, project: int, id: str | None = None) -> Any:
        self.views = [v for v in self.views if str(v.id) != id]
        self.views.append(SimpleNamespace(id=id or len(self.views) + 1, data=data))
        return self.views[-1]

    @property
    def sdk(self) -> Any:
        made = SimpleNamespace(id=1)
        return SimpleNamespace(
            projects=SimpleNamespace(
                list=lambda title: iter(self.existing), create=self._create, update=self._update
            ),
            import_storage=SimpleNamespace(
                local=SimpleNamespace(list=lambda project: [], create=lambda **_: made)
            ),
            ml=SimpleNamespace(list=lambda project: [], create=lambda **_: made),
            webhooks=SimpleNamespace(
                list=lambda project: list(self.hooks),
                create=lambda **o: self._hook("create", **o),
                update=lambda id, **o: self._hook(f"update {id}", **o),
            ),
            users=SimpleNamespace(list=lambda: iter([]), create=lambda **_: made),
            views=SimpleNamespace(
                list=lambda project: list(self.views),
                create=lambda data, project: self._view(data, project),
                update=lambda id, data, project: self._view(data, project, id),
            ),
        )


@pytest.fixture
def studio(monkeypatch: pytest.MonkeyPatch) -> _ProjectStudio:
    fake = _ProjectStudio()
    monkeypatch.setattr("labeler.studio.client.connect", lambda _settings: fake)
    monkeypatch.setattr("labeler.studio.readers.ensure_readers", lambda _studio, _settings: [])
    return fake


def test_setup_installs_the_config_that_studio_config_prints(
    settings: Settings, studio: _ProjectStudio
) -> None:
    printed = runner.invoke(app, ["studio", "config"])
    assert printed.exit_code == 0, printed.output
    assert 'value="BI-RADS 4"' in printed.stdout
    setup = runner.invoke(app, ["studio", "setup"])
    assert setup.exit_code == 0, setup.output
    assert printed.stdout.strip() == studio.sent[0]["label_config"].strip()

    studio.existing = [SimpleNamespace(id=7, title=settings.studio_project)]
    again = runner.invoke(app, ["studio", "setup"])
    assert again.exit_code == 0, again.output
    assert "updated" in again.output
    assert studio.sent[1]["label_config"] == studio.sent[0]["label_config"]  # an update, too
    assert studio.sent[1]["sampling"] == "Sequential sampling"
    (view,) = studio.views  # one tab, kept, not duplicated
    assert view.data == {"title": QUEUE_VIEW, "ordering": QUEUE_ORDERING}


def test_the_webhook_carries_the_backends_credentials_when_auth_is_on(
    settings: Settings, studio: _ProjectStudio, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABELER_BACKEND_AUTH", "basic")
    monkeypatch.setenv("LABELER_BACKEND_PASSWORD", "s3cret")
    assert runner.invoke(app, ["studio", "setup"]).exit_code == 0
    ((kind, sent),) = studio.hook_calls
    assert kind == "create" and sent["send_payload"] is True
    scheme, _, value = sent["headers"]["Authorization"].partition(" ")
    assert (scheme, base64.b64decode(value).decode()) == ("Basic", "labelstudio:s3cret")

    url = settings.backend_url.rstrip("/") + "/webhook"
    studio.hooks = [SimpleNamespace(id=5, url=url, headers={})]  # made before auth was on
    assert runner.invoke(app, ["studio", "setup"]).exit_code == 0
    assert studio.hook_calls[-1] == ("update 5", {"headers": sent["headers"]})


def test_without_auth_the_webhook_sends_no_credentials(studio: _ProjectStudio) -> None:
    assert runner.invoke(app, ["studio", "setup"]).exit_code == 0
    ((_, sent),) = studio.hook_calls
    assert sent["headers"] == {}
