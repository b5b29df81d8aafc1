"""Models and serving: the BI-RADS detector, evaluation, model registry (later: HTTP backend)."""
