"""model_versions.metrics: each kind of VersionMetrics round-trips; untyped dicts are refused."""

from __future__ import annotations

import pydantic
import pytest
from sqlalchemy import text
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session, sessionmaker

from core.results import (
    Birads4Threshold,
    DetectorVersionMetrics,
    EncoderScores,
    EncoderVersionMetrics,
    RetrievalRow,
    VersionMetrics,
)
from db.queries import versions as version_queries
from tests.db.rows import add_version

ROW = RetrievalRow(
    map_at_10=0.5, precision_at_1=1.0, precision_at_10=None, n_queries=4, n_skipped=1
)
DETECTOR = DetectorVersionMetrics(
    n_train_images=57,
    birads4_threshold=Birads4Threshold(value=0.4, chosen_from="plain-4", n_images=6),
)
ENCODER = EncoderVersionMetrics(
    method="lr",
    held_out="fold 1",
    n_train_images=40,
    n_train_lesions=30,
    losses=(0.7, 0.5),
    train_seconds=1.5,
    train={"method": "lr", "epochs": 2},
    scores=EncoderScores(
        auc=0.8,
        precision=0.5,
        f1=0.6,
        mcr=None,
        acc=0.7,
        acc_ci=(0.4, 0.9),
        sen=None,
        sen_ci=None,
        spe=1.0,
        spe_ci=(0.5, 1.0),
        n_images=14,
        n_multiview_lesions=2,
        retrieval={"all": ROW},
        other_view=ROW,
        n_gallery=40,
    ),
)


def _add(session: Session, version_id: str, metrics: VersionMetrics | None) -> None:
    kind = "encoder" if isinstance(metrics, EncoderVersionMetrics) else "detector"
    add_version(session, version_id, kind=kind, metrics=metrics)


def test_each_kind_and_none_round_trip(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        _add(s, "d", DETECTOR)
        _add(s, "e", ENCODER)
        _add(s, "n", None)
    with sessions() as s:
        got = {v.id: v.metrics for v in version_queries.model_versions(s)}
        rows = s.execute(text("SELECT id, CAST(metrics AS TEXT) FROM model_versions")).all()
        stored: dict[str, str] = {row_id: raw for row_id, raw in rows}
    assert got == {"d": DETECTOR, "e": ENCODER, "n": None}
    assert isinstance(got["e"], EncoderVersionMetrics) and got["e"].losses == (0.7, 0.5)
    assert stored["n"] == "null" and '"kind": "detector"' in stored["d"]


def test_an_untyped_dict_is_refused(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, pytest.raises(StatementError) as caught:
        _add(s, "d", {"val_map50": 0.4})  # type: ignore[arg-type]
    assert isinstance(caught.value.orig, pydantic.ValidationError)
