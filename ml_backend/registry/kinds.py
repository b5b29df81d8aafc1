"""The model kinds this project registers (registry kinds are [a-z0-9_])."""

DETECTOR_KIND = "detector"
NO4_KIND = "detector_no4"
ENCODER_KIND = "encoder"  # lesion encoder (ml_backend/encoder); its index: encoder/index.py
