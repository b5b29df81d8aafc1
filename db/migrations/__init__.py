"""Alembic migrations for the labeling database."""
