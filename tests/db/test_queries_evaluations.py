"""db.queries.evaluations: one typed result per (version, dataset, split), replaced on rerun."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from db.queries import evaluations as evaluation_queries
from tests.db.rows import add_version, metrics


def test_save_replaces_and_round_trips_typed_metrics(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_version(s, "v1")
        add_version(s, "v2")
        evaluation_queries.save_evaluation(
            s, model_version_id="v1", dataset="all", split="test", metrics=metrics(0.3)
        )
        evaluation_queries.save_evaluation(
            s, model_version_id="v1", dataset="all", split="val", metrics=metrics(0.4)
        )
    with sessions.begin() as s:
        evaluation_queries.save_evaluation(
            s, model_version_id="v1", dataset="all", split="test", metrics=metrics(0.5)
        )
    with sessions() as s:
        rows = evaluation_queries.evaluations(s, model_version_id="v1")
        assert [(r.split, r.metrics.detection.map50) for r in rows] == [("test", 0.5), ("val", 0.4)]
        assert rows[0].metrics == metrics(0.5)
        assert rows[0].metrics.gate_value("map50") == 0.5
        assert evaluation_queries.evaluations(s, model_version_id="v2") == []
