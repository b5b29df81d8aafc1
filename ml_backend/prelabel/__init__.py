"""The pre-label pipeline's decisions: which boxes are shown, the image's category and its
probability, the calibrator, the operating point and the ACR likelihood bins."""
