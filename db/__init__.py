"""Persistence: the database, its migrations and its query functions.

Every package above `core` may import `db`; `db` imports only `core`.
"""
