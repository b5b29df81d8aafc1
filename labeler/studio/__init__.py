"""Label Studio glue: the server process, project bootstrap, task push and annotation sync.

JSON shapes come from `ml_backend.studio.format`; this package only talks to the API.
"""
