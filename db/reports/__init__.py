"""Read-only reports for the dashboard, one module per concern: database, progress, agreement,
versions, evaluation, images.

Apart from `db.queries` because the dashboard opens the database read-only and only aggregates:
nothing here adds, flushes or commits. Results are frozen dataclasses (or core.results models),
so Streamlit can pickle them into its cache. Large results (every review) are columnar, so 100k
rows stay cheap. Image ids are the only image identifiers returned: never patient keys.
"""
