"""The lesion encoder: crop-level embeddings for benign/malignant and similar-lesion search.

model.py (trunk, GeM, heads), crops.py (box + margin -> 224 crop), losses.py (CE, lesion
recognition, entropy regulariser, BI-RADS MSE, NT-Xent, hard triplet), sampler.py (P lesions x
K views), retrieval.py and classification.py (evaluation).
"""
