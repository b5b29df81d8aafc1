"""Bottom layer of the project: settings, the BI-RADS taxonomy, the database and its queries.

Every other package may import `db`; `db` imports none of them.
"""
