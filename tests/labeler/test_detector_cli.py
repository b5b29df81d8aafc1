"""`labeler train`, `evaluate`, `predict`, `models` on the bundled real sample, as CI runs them.

Training is the slow part (the `tiny` preset, about 30 s an epoch on 2 cores), so each model
is trained once per module and the tests read what it left behind.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from core.settings import Settings
from labeler.cli import app
from labeler.context import AppContext
from ml_backend.registry import ModelRegistry
from tests.conftest import copy_sample, isolated_env

runner = CliRunner()


@dataclass(frozen=True)
class Trained:
    home: Path
    detector: dict[str, Any]
    no4: dict[str, Any]


def _json(args: list[str]) -> dict[str, Any]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    base = tmp_path_factory.mktemp("detector-cli")
    root = base / "root"
    root.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in isolated_env(base).items():
            mp.setenv(key, value)
        for name, dataset in (
            ("busbra_mini", "busbra"),
            ("breast_lesions_usg_mini", "breast-lesions-usg"),
        ):
            _json(["import", str(copy_sample(name, root)), "--dataset", dataset])
        detector = _json(["train", "--config", "tiny", "--epochs", "1"])
        no4 = _json(["train", "--config", "tiny", "--epochs", "1", "--exclude-birads", "4"])
        yield Trained(base / "home", detector, no4)


def test_train_registers_and_promotes_the_first_version(trained: Trained) -> None:
    out = trained.detector
    assert out["kind"] == "detector" and out["promoted"] is True and out["epochs"] == 1
    assert out["n_train_images"] == 57 and out["skipped"] == {}
    folder = trained.home / "models" / out["version_id"]
    assert {"weights.pt", "config.json", "version.json"} <= {p.name for p in folder.iterdir()}
    assert out["metrics"]["kind"] == "detector" and out["metrics"]["n_train_images"] == 57
    assert {"map50", "lesion_recall50", "screening_acc"} <= set(out["metrics"]["val"])
    listed = _json(["models", "list"])["versions"]
    assert {v["id"] for v in listed if v["active"]} == {
        out["version_id"],
        trained.no4["version_id"],
    }


def test_no4_model_leaves_out_birads_4_and_picks_its_threshold_on_plain_4(trained: Trained) -> None:
    out = trained.no4
    assert out["kind"] == "detector_no4"
    assert out["skipped"]["BI-RADS 4 excluded"] > 0
    assert out["n_train_images"] + out["skipped"]["BI-RADS 4 excluded"] == 57
    threshold = out["metrics"]["birads4_threshold"]
    assert threshold["chosen_from"] == "plain-4" and threshold["n_images"] > 0
    assert 0.0 <= threshold["value"] <= 1.0


def test_evaluate_reports_the_papers_tables_and_stores_them(trained: Trained) -> None:
    result = _json(["evaluate"])
    m = result["metrics"]
    assert result["split"] == "test" and m["n_images"] == 19
    assert 0.0 <= m["detection"]["map50"] <= 1.0 and m["detection"]["fp_per_image"] >= 0
    assert m["schema_version"] == 1 and len(m["split_manifest_sha256"]) == 64
    matrix = m["birads"]["matrix"]
    assert matrix["labels"] == ["1", "2", "3", "4", "5"]
    assert sum(map(sum, matrix["counts"])) == 19
    assert m["screening"]["plain_4_counted_as"] == "malignant"
    engine = create_engine(f"sqlite:///{trained.home / 'labeler.db'}")
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT model_version_id, split FROM evaluations")).all()
    assert (trained.detector["version_id"], "test") in [tuple(r) for r in stored]


def test_evaluate_scores_the_4a_4b_rule_on_real_expert_labels(trained: Trained) -> None:
    result = _json(["evaluate", "--model", trained.no4["version_id"]])
    table = result["metrics"]["birads4_split"]
    assert table["n_images"] == 9  # every 4a/4b image of the BrEaST sample
    assert sum(map(sum, table["matrix"]["counts"])) == 9
    assert table["positive"] == "4B"
    assert result["metrics"]["birads"]["matrix"]["labels"] == ["1", "2", "3", "5"]


def test_predict_prelabels_every_image_once(trained: Trained) -> None:
    first = _json(["predict"])
    assert (first["predicted"], first["already_predicted"]) == (88, 0)
    again = _json(["predict"])
    assert (again["predicted"], again["already_predicted"]) == (0, 88)
    engine = create_engine(f"sqlite:///{trained.home / 'labeler.db'}")
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT image_birads, uncertainty, malignancy, produced_by FROM predictions")
        ).all()
    assert len(rows) == 88
    # The active BI-RADS-4-excluded model splits every plain-4 call: readers never see "4".
    assert all(r[0] in {"1", "2", "3", "4A", "4B", "5"} and 0.0 <= r[1] <= 1.0 for r in rows)
    assert all(0.0 <= r[2] <= 1.0 for r in rows)
    sources = [json.loads(r[3]) for r in rows]
    assert {s["detector"] for s in sources} == {trained.detector["version_id"]}
    split = {r[0] for r, s in zip(rows, sources, strict=True) if s["splitter"] is not None}
    assert split <= {"4A", "4B"}
    assert all(s["splitter"] == trained.no4["version_id"] for s in sources if s["splitter"])
    calls = [im["birads"] for im in first["images"]]
    assert sorted(calls) == sorted(r[0] for r in rows)  # --json reports what was stored


def _register_copy(version_id: str) -> str:
    """A second detector version with the first one's files (registered, not promoted)."""
    app_ctx = AppContext(Settings(_env_file=None))  # the module's LABELER_* environment
    registry = ModelRegistry.for_settings(app_ctx.settings, app_ctx.sessions)
    info = registry.get(version_id)
    with registry.staging(info.kind) as staged:
        for f in info.path.iterdir():
            if f.name in {"weights.pt", "config.json"}:
                shutil.copy2(f, staged / f.name)
        copy = registry.register(
            staged,
            kind=info.kind,
            label_space=info.label_space,
            config=info.config,
            data_manifest_sha256=info.data_manifest_sha256,
            parent_id=version_id,
        )
    app_ctx.engine.dispose()
    assert not copy.active  # a later version waits for promotion
    return copy.id


def test_promote_and_rollback_move_the_pointer(trained: Trained) -> None:
    first = trained.detector["version_id"]
    second = _register_copy(first)  # promote/rollback are under test here, not training
    assert _json(["models", "promote", second])["active"] is True
    assert _json(["models", "rollback", "--kind", "detector"])["id"] == first
    refused = runner.invoke(app, ["models", "promote", "detector-nope"])
    assert refused.exit_code == 2 and "detector-nope" in refused.output
