"""Model registry on a real SQLite file: immutable versions, the active pointer, rollback."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.errors import BadInputError, ExitCode
from core.results import DetectorVersionMetrics
from core.settings import Settings
from db.models import Event, ModelPromotion, ModelVersion
from db.queries import events as event_queries
from db.queries import versions as version_queries
from ml_backend.registry import (
    ModelRegistry,
    NothingToRollBackError,
    RegistryError,
    UnknownVersionError,
    VersionInfo,
    installed_package_version,
)

SHA = hashlib.sha256(b"manifest").hexdigest()
LABELS = ("2", "3", "4", "5")


@pytest.fixture
def registry(settings: Settings, sessions: sessionmaker[Session]) -> ModelRegistry:
    return ModelRegistry.for_settings(settings, sessions)


def make_version(
    registry: ModelRegistry,
    kind: str = "detector",
    *,
    weights: bytes = b"weights",
    **extra: Any,
) -> VersionInfo:
    with registry.staging(kind) as folder:
        (folder / "weights.pt").write_bytes(weights)
        (folder / "sub").mkdir()
        (folder / "sub" / "config.yaml").write_text("lr: 0.01\n")
        return registry.register(
            folder,
            kind=kind,
            label_space=LABELS,
            config={"lr": 0.01, "epochs": 3},
            data_manifest_sha256=SHA,
            **extra,
        )


def visible_entries(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()} - {".staging"} if root.exists() else set()


def test_register_lists_the_version_with_its_metadata(
    registry: ModelRegistry, settings: Settings
) -> None:
    metrics = DetectorVersionMetrics(n_train_images=42)
    info = make_version(registry, metrics=metrics)

    assert re.fullmatch(r"detector-\d{8}-\d{6}-[0-9a-f]{4}", info.id)
    assert info.path == settings.home / "models" / info.id
    assert info.path.is_dir()
    assert (info.path / "weights.pt").read_bytes() == b"weights"
    assert (info.path / "sub" / "config.yaml").read_text() == "lr: 0.01\n"
    assert info.active is False
    assert info.status == "registered"
    assert info.created_at.tzinfo is not None
    assert info.package_version == installed_package_version() != ""

    listed = registry.list_versions()
    assert listed == [info]
    assert registry.get(info.id) == info
    assert registry.path_of(info.id) == info.path
    assert registry.active("detector") is None

    meta = json.loads((info.path / "version.json").read_text())
    assert meta["id"] == info.id
    assert meta["kind"] == "detector"
    assert meta["label_space"] == list(LABELS) == list(info.label_space)
    assert meta["config"] == {"lr": 0.01, "epochs": 3} == info.config
    assert meta["data_manifest_sha256"] == SHA == info.data_manifest_sha256
    assert meta["metrics"] == metrics.model_dump(mode="json") and info.metrics == metrics
    assert meta["parent_id"] is None
    assert meta["package_version"] == info.package_version
    # nothing is left behind in staging after a successful register
    assert list(registry.staging_root.iterdir()) == []


def test_register_after_the_staging_block_and_with_a_parent(registry: ModelRegistry) -> None:
    parent = make_version(registry)
    with registry.staging("detector") as folder:
        (folder / "weights.pt").write_bytes(b"finetuned")
    child = registry.register(
        folder,
        kind="detector",
        label_space=LABELS,
        config={},
        data_manifest_sha256=SHA,
        parent_id=parent.id,
        package_version="9.9.9",
    )
    assert child.parent_id == parent.id
    assert child.package_version == "9.9.9"
    assert json.loads((child.path / "version.json").read_text())["parent_id"] == parent.id
    assert [v.id for v in registry.list_versions()] == [child.id, parent.id]  # newest first


def test_registered_files_are_read_only(registry: ModelRegistry) -> None:
    info = make_version(registry)
    files = [p for p in info.path.rglob("*") if p.is_file()]
    assert {p.name for p in files} == {"weights.pt", "config.yaml", "version.json"}
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o444, file


def test_register_never_moves_the_active_pointer(registry: ModelRegistry) -> None:
    first = make_version(registry)
    registry.promote(first.id)
    make_version(registry)
    active = registry.active("detector")
    assert active is not None
    assert active.id == first.id


def test_promote_and_rollback_walk_the_history_back(
    registry: ModelRegistry, sessions: sessionmaker[Session]
) -> None:
    a, b, c = (make_version(registry, weights=w) for w in (b"a", b"b", b"c"))

    for version in (a, b, c):
        promoted = registry.promote(version.id, actor="alice", reason="better mAP")
        assert promoted.id == version.id
        assert promoted.active is True
    assert [v.id for v in registry.list_versions() if v.active] == [c.id]

    back = registry.rollback("detector", actor="bob")
    assert back.id == b.id
    active = registry.active("detector")
    assert active is not None and active.id == b.id

    assert registry.rollback("detector").id == a.id
    active = registry.active("detector")
    assert active is not None and active.id == a.id

    with pytest.raises(NothingToRollBackError, match="no earlier 'detector' model"):
        registry.rollback("detector")
    active = registry.active("detector")
    assert active is not None and active.id == a.id  # a refused rollback changes nothing

    assert registry.history("detector") == [
        ("promote", a.id, None),
        ("promote", b.id, a.id),
        ("promote", c.id, b.id),
        ("rollback", b.id, c.id),
        ("rollback", a.id, b.id),
    ]
    with sessions() as session:
        rows = version_queries.promotion_history(session, kind="detector")
        assert [r.actor for r in rows] == ["alice", "alice", "alice", "bob", "cli"]
        assert rows[0].reason == "better mAP"


def test_promote_after_rollback_then_rollback_returns_to_the_earlier_one(
    registry: ModelRegistry,
) -> None:
    a, b, c = (make_version(registry, weights=w) for w in (b"a", b"b", b"c"))
    registry.promote(a.id)
    registry.promote(b.id)
    assert registry.rollback("detector").id == a.id
    registry.promote(c.id)
    assert registry.rollback("detector").id == a.id


def test_rollback_without_an_active_model_is_a_clear_error(registry: ModelRegistry) -> None:
    with pytest.raises(NothingToRollBackError, match="no 'detector' model is active"):
        registry.rollback("detector")


def test_promoting_the_active_version_again_is_a_no_op(
    registry: ModelRegistry, sessions: sessionmaker[Session]
) -> None:
    a = make_version(registry)
    registry.promote(a.id)
    registry.promote(a.id)
    assert registry.history("detector") == [("promote", a.id, None)]
    with sessions() as session:
        assert event_queries.count_events(session, action="promote") == 1


def test_promote_and_rollback_write_audit_events(
    registry: ModelRegistry, sessions: sessionmaker[Session]
) -> None:
    a, b = make_version(registry), make_version(registry, weights=b"b")
    registry.promote(a.id, actor="alice")
    registry.promote(b.id, actor="alice")
    registry.rollback("detector", actor="bob")

    with sessions() as session:
        events = list(session.scalars(select(Event).order_by(Event.id)))
    assert [(e.action, e.actor, e.subject) for e in events] == [
        ("promote", "alice", "model:detector"),
        ("promote", "alice", "model:detector"),
        ("rollback", "bob", "model:detector"),
    ]
    assert events[1].detail == {
        "kind": "detector",
        "version_id": b.id,
        "previous_version_id": a.id,
    }
    assert events[2].detail["version_id"] == a.id


def test_a_failing_audit_write_leaves_the_pointer_where_it_was(
    registry: ModelRegistry, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = make_version(registry), make_version(registry, weights=b"b")
    registry.promote(a.id)

    def broken(*_args: object, **_kwargs: object) -> Event:
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(event_queries, "record_event", broken)
    with pytest.raises(RuntimeError, match="audit log unavailable"):
        registry.promote(b.id)

    active = registry.active("detector")
    assert active is not None and active.id == a.id  # one transaction: all or nothing
    with sessions() as session:
        assert len(session.scalars(select(ModelPromotion)).all()) == 1


def test_two_kinds_keep_separate_pointers(registry: ModelRegistry) -> None:
    d1, d2 = make_version(registry, "detector"), make_version(registry, "detector", weights=b"2")
    c1 = make_version(registry, "classifier")
    registry.promote(d1.id)
    registry.promote(c1.id)
    registry.promote(d2.id)

    detector, classifier = registry.active("detector"), registry.active("classifier")
    assert detector is not None and detector.id == d2.id
    assert classifier is not None and classifier.id == c1.id
    assert [v.id for v in registry.list_versions("classifier")] == [c1.id]
    assert {v.id for v in registry.list_versions("detector")} == {d1.id, d2.id}
    assert {v.id for v in registry.list_versions() if v.active} == {d2.id, c1.id}

    assert registry.rollback("detector").id == d1.id
    classifier = registry.active("classifier")
    assert classifier is not None and classifier.id == c1.id
    with pytest.raises(NothingToRollBackError):
        registry.rollback("classifier")


def test_unknown_ids_name_the_id(registry: ModelRegistry) -> None:
    with pytest.raises(UnknownVersionError, match="no model version 'detector-nope'") as err:
        registry.get("detector-nope")
    assert isinstance(err.value, BadInputError) and err.value.exit_code == ExitCode.BAD_INPUT
    assert str(err.value) == "no model version 'detector-nope' is registered"
    with pytest.raises(UnknownVersionError, match="detector-nope"):
        registry.promote("detector-nope")
    with pytest.raises(UnknownVersionError, match="detector-nope"):
        registry.path_of("detector-nope")
    with pytest.raises(UnknownVersionError, match="missing-parent"):
        make_version(registry, parent_id="missing-parent")


def test_an_exception_inside_staging_leaves_nothing(registry: ModelRegistry) -> None:
    with pytest.raises(RuntimeError, match="trainer crashed"), registry.staging("detector") as f:
        (f / "weights.pt").write_bytes(b"half")
        staged = f
        raise RuntimeError("trainer crashed")

    assert not staged.exists()
    assert visible_entries(registry.root) == set()
    assert list(registry.staging_root.iterdir()) == []
    assert registry.list_versions() == []


def test_a_failed_insert_removes_the_renamed_folder(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = make_version(registry)
    renamed: list[Path] = []
    real_add = version_queries.add_model_version

    def add_then_fail(session: Session, **kwargs: Any) -> ModelVersion:
        folder = registry.root / kwargs["version_id"]
        assert folder.is_dir()  # the rename happened before the insert
        renamed.append(folder)
        real_add(session, **kwargs)
        raise OSError("disk full while inserting")

    monkeypatch.setattr(version_queries, "add_model_version", add_then_fail)
    with pytest.raises(OSError, match="disk full"):
        make_version(registry, weights=b"lost")

    assert len(renamed) == 1
    assert not renamed[0].exists()
    assert visible_entries(registry.root) == {kept.id}
    assert [v.id for v in registry.list_versions()] == [kept.id]
    assert list(registry.staging_root.iterdir()) == []


def test_register_refuses_bad_input_before_moving_anything(registry: ModelRegistry) -> None:
    with registry.staging("detector") as folder:
        (folder / "weights.pt").write_bytes(b"w")
        common: dict[str, Any] = {"kind": "detector", "label_space": LABELS, "config": {}}
        with pytest.raises(ValueError, match="64 lowercase hex"):
            registry.register(folder, data_manifest_sha256="abc", **common)
        with pytest.raises(ValueError, match="duplicates"):
            registry.register(
                folder,
                kind="detector",
                label_space=["2", "2"],
                config={},
                data_manifest_sha256=SHA,
            )
        with pytest.raises(ValueError, match="model kind"):
            registry.register(
                folder, kind="Bad Kind", label_space=LABELS, config={}, data_manifest_sha256=SHA
            )
        assert folder.is_dir()
    with pytest.raises(RegistryError, match="not a staging folder"):
        registry.register(
            registry.root, kind="detector", label_space=LABELS, config={}, data_manifest_sha256=SHA
        )
    assert registry.list_versions() == []
    assert visible_entries(registry.root) == set()


def test_promote_refuses_a_version_whose_folder_is_gone(registry: ModelRegistry) -> None:
    info = make_version(registry)
    for file in info.path.rglob("*"):
        if file.is_file():
            file.unlink()
    with pytest.raises(RegistryError, match="no folder on disk"):
        registry.promote(info.id)
    assert registry.active("detector") is None


def test_cleanup_staging_removes_only_old_leftovers(registry: ModelRegistry) -> None:
    kept = make_version(registry)
    old = time.time() - 7200

    abandoned = registry.staging_root / "detector-killed"
    (abandoned / "sub").mkdir(parents=True)
    (abandoned / "sub" / "weights.pt").write_bytes(b"x")
    for path in (abandoned / "sub" / "weights.pt", abandoned / "sub", abandoned):
        os.utime(path, (old, old))
    busy = registry.staging_root / "detector-busy"
    busy.mkdir()
    (busy / "weights.pt").write_bytes(b"still writing")
    os.utime(busy, (old, old))  # the folder is old, but a file in it was just written

    orphan = registry.root / "detector-20260101-000000-dead"  # killed between rename and insert
    orphan.mkdir()
    (orphan / "version.json").write_text("{}")
    for path in (orphan / "version.json", orphan):
        os.utime(path, (old, old))

    removed = registry.cleanup_staging(max_age_s=3600)

    assert set(removed) == {abandoned, orphan}
    assert not abandoned.exists() and not orphan.exists()
    assert busy.is_dir()
    assert kept.path.is_dir()  # registered versions are never touched, however old
    assert registry.cleanup_staging(max_age_s=0) == [busy]


def test_the_next_staging_clears_a_killed_writers_leftover(registry: ModelRegistry) -> None:
    """Nothing else calls `cleanup_staging`: opening a staging folder is where it happens."""
    old = time.time() - 7200
    abandoned = registry.staging_root / "detector-killed"
    abandoned.mkdir(parents=True)
    (abandoned / "weights.pt").write_bytes(b"x")
    for path in (abandoned / "weights.pt", abandoned):
        os.utime(path, (old, old))
    with registry.staging("detector") as staged:
        assert not abandoned.exists()
        assert staged.parent == registry.staging_root and staged.is_dir()


def _causes(exc: BaseException | None) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def test_weights_that_do_not_fit_leave_no_staging_folder(
    settings: Settings,
    sessions: sessionmaker[Session],
    small_disk: Callable[[Path, str], Path],
) -> None:
    """A full disk while the weights are written: the error says ENOSPC (so the CLI prints one
    line, exit code 7), and the half-written staging folder is gone."""
    from ml_backend.detector.config import load_config
    from ml_backend.detector.frcnn import FasterRCNNDetector

    registry = ModelRegistry.for_settings(settings, sessions)
    small_disk(registry.root, "256k")
    with pytest.raises(Exception) as caught, registry.staging("detector") as staged:
        FasterRCNNDetector(load_config("small")).save(staged)
    assert any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in _causes(caught.value)), (
        repr(caught.value)
    )
    assert not staged.exists() and list(registry.staging_root.iterdir()) == []
    assert registry.list_versions() == []
