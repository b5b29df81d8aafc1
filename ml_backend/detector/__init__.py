"""The BI-RADS detector: a contract (interface.py) and its torchvision implementation."""
