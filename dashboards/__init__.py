"""The Streamlit dashboard: `streamlit run dashboards/app.py` (or `labeler dashboard`).

It reads the database through `db.reports` and `db.queries`, read-only, and imports nothing from
`labeler` or `ml_backend`.
"""
