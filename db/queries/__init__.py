"""Persistence, one module per concern: keyword-only, typed query functions.

`labeler`, `ml_backend` and `dashboards` call these instead of writing ad-hoc queries, so the schema
can change behind them. Workflow rules (what a round is, which image goes to the readers next)
live in `labeler`; these modules only read and write rows. Import the module of the concern
(`from db.queries import images as image_queries`); this package re-exports nothing.
"""
