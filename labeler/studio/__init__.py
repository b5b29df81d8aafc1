"""Label Studio glue: the server process, project bootstrap, task push and annotation sync.

Label Studio's JSON is read and written by the adapter in `ml_backend.studio` (typed models in
schema.py and events.py); this package only talks to the API.
"""
