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
from ml_backend.detector.precision import derived_folder, int8_graph, sha256
from ml_backend.registry import ModelRegistry
from ml_backend.runtime import flag_line
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


def test_optimize_measures_each_path_beside_the_sealed_version(trained: Trained) -> None:
    version = trained.detector["version_id"]
    choice = _json(["models", "optimize", version, "--calibration-images", "8"])
    trials = {t["precision"]: t for t in choice["trials"]}
    assert next(iter(trials)) == "fp32" and "int8" in trials
    assert trials["fp32"]["map50_drop"] == 0.0 and trials["fp32"]["within_bound"] is True
    assert all(t["s_per_img"] > 0 for t in trials.values())
    assert choice["chosen"] in trials and choice["cpu"] == flag_line()
    derived = derived_folder(trained.home, version)
    graph = int8_graph(derived, choice["int8_sha256"])
    assert sha256(graph) == choice["int8_sha256"]
    assert _json(["models", "verify", version])["damaged"] == []  # the seal is untouched


def _measured_as(
    monkeypatch: pytest.MonkeyPatch, speed: dict[str, float], cost_points: float
) -> None:
    """Measurements as on a CPU where int8 runs at `speed` and costs `cost_points` of mAP."""
    from labeler.jobs import evaluate as scoring
    from labeler.jobs import optimize as job

    ran: list[str] = []
    real_predict, real_score = scoring.predict_usable, scoring.score_predictions

    def predict(app_ctx: AppContext, detector: Any, images: Any) -> Any:
        ran.append(detector.precision)
        return real_predict(app_ctx, detector, images)

    def score(*args: Any, **kwargs: Any) -> Any:
        metrics = real_score(*args, **kwargs)
        lost = cost_points / 100 if ran[-1] == "int8" else 0.0
        detection = metrics.detection.model_copy(update={"lesion_map50": 0.7 - lost})
        return metrics.model_copy(update={"detection": detection})

    monkeypatch.setattr(job, "predict_usable", predict)
    monkeypatch.setattr(job, "score_predictions", score)
    monkeypatch.setattr(job, "_seconds_per_image", lambda a, det, i: speed[det.precision])


def test_auto_takes_int8_only_where_it_wins_and_evaluate_scores_that_path(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        _measured_as(patched, {"fp32": 1.0, "bf16": 0.6, "int8": 0.25}, cost_points=0.3)
        assert _json(["models", "optimize", "--calibration-images", "8"])["chosen"] == "int8"
    out = runner.invoke(app, ["evaluate", "--split", "val"])
    assert out.exit_code == 0 and "in int8 (as pre-labels run)" in out.stdout
    engine = create_engine(f"sqlite:///{trained.home / 'labeler.db'}")
    with engine.connect() as conn:  # the stored tables say which arithmetic produced them
        stored = conn.execute(
            text("SELECT metrics FROM evaluations WHERE split = 'val' AND model_version_id = :v"),
            {"v": trained.detector["version_id"]},
        ).first()
    assert stored is not None and json.loads(stored[0])["prelabel"]["precision"] == "int8"
    reference = _json(["evaluate", "--split", "val", "--precision", "fp32"])
    assert reference["metrics"]["prelabel"]["precision"] == "fp32"

    _measured_as(monkeypatch, {"fp32": 1.0, "bf16": 2.0, "int8": 0.25}, cost_points=2.0)
    choice = _json(["models", "optimize", "--calibration-images", "8"])
    int8 = next(t for t in choice["trials"] if t["precision"] == "int8")
    assert int8["map50_drop"] == pytest.approx(2.0) and int8["within_bound"] is False
    assert choice["chosen"] == "fp32"  # no faster path is accurate enough: the reference
