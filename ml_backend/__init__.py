"""Models and serving: the BI-RADS detector, the lesion encoder, active-learning strategies,
evaluation, the model registry, and the HTTP ML backend Label Studio calls (`server/`)."""
