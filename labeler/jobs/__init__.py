"""Long jobs behind the CLI (and later the cron job): train, evaluate, pre-label.

They read the database through db.queries, hand typed records to ml_backend, and store results.
"""
