"""Evaluation of detectors against ground truth: the metrics of Wang et al.'s Tables I, II and III.

`DetectionEvaluator` (evaluator.py) gives COCO mAP, lesion recall, the image-level BI-RADS
confusion matrix and binary screening metrics; birads4.py splits BI-RADS 4 into 4A/4B.
"""
