"""The ML backend Label Studio talks to: /health, /setup, /predict, /webhook, /versions.

Predictions come from the `predictions` table (the batch pre-labeling job fills it); the model is
loaded once per process and runs only on a cache miss. Training is never started here: a
START_TRAINING webhook is stored for the retrain job.
"""
