"""Training the detector: a short engine in the spirit of torchvision's references/detection."""
