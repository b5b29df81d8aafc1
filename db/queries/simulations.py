"""Simulated labeling curves: one point per (simulation, round)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.results import SimulationMetrics
from db.models import SimulationPoint


@dataclass(frozen=True)
class NewSimulationPoint:
    simulation: str
    strategy: str
    round: int
    reviews: int
    labeled_images: int
    accept_rate: float | None
    metrics: SimulationMetrics


def save_simulation_point(session: Session, *, point: NewSimulationPoint) -> None:
    """Insert or replace the (simulation, round) point, so a rerun overwrites its curve."""
    row = session.scalars(
        select(SimulationPoint).where(
            SimulationPoint.simulation == point.simulation, SimulationPoint.round == point.round
        )
    ).one_or_none()
    if row is None:
        row = SimulationPoint(simulation=point.simulation, round=point.round)
        session.add(row)
    row.strategy = point.strategy
    row.reviews = point.reviews
    row.labeled_images = point.labeled_images
    row.accept_rate = point.accept_rate
    row.metrics = point.metrics


def stored_points(session: Session, *, simulation: str | None = None) -> list[NewSimulationPoint]:
    """The stored points as plain values (usable after the session closes), oldest round first."""
    return [
        NewSimulationPoint(
            simulation=r.simulation,
            strategy=r.strategy,
            round=r.round,
            reviews=r.reviews,
            labeled_images=r.labeled_images,
            accept_rate=r.accept_rate,
            metrics=r.metrics,
        )
        for r in simulation_points(session, simulation=simulation)
    ]


def delete_simulation(session: Session, *, simulation: str) -> int:
    """Drop a curve's points (before a rerun writes it again); returns how many."""
    rows = simulation_points(session, simulation=simulation)
    for row in rows:
        session.delete(row)
    session.flush()
    return len(rows)


def simulation_points(session: Session, *, simulation: str | None = None) -> list[SimulationPoint]:
    stmt = select(SimulationPoint).order_by(SimulationPoint.simulation, SimulationPoint.round)
    if simulation is not None:
        stmt = stmt.where(SimulationPoint.simulation == simulation)
    return list(session.scalars(stmt))
