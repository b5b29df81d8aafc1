"""db.queries.simulations: a curve's point per round is replaced on rerun."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from core.results import SimulationMetrics
from db.queries import simulations as simulation_queries


def _point(simulation: str, round: int, map50: float) -> simulation_queries.NewSimulationPoint:
    metrics = SimulationMetrics(
        version=f"v{round}", map50=map50, lesion_map50=None, auc=0.7, acc=None, sen=None, spe=None
    )
    return simulation_queries.NewSimulationPoint(
        simulation, "uncertainty", round, 3 * round, round, 0.5, metrics
    )


def test_points_are_replaced_and_deleted_per_curve(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        for simulation in ("b", "a"):
            for round in (2, 1):
                simulation_queries.save_simulation_point(s, point=_point(simulation, round, 0.1))
        simulation_queries.save_simulation_point(s, point=_point("a", 2, 0.9))
    with sessions() as s:
        points = simulation_queries.simulation_points(s)
        assert [(p.simulation, p.round) for p in points] == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
        assert points[1].metrics.map50 == 0.9 and points[1].reviews == 6
        assert [p.round for p in simulation_queries.simulation_points(s, simulation="b")] == [1, 2]
    with sessions.begin() as s:
        assert simulation_queries.delete_simulation(s, simulation="a") == 2
    with sessions() as s:
        assert {p.simulation for p in simulation_queries.simulation_points(s)} == {"b"}
