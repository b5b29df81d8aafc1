"""Label Studio's JSON, in one place: the adapter between Label Studio and our records.

- schema.py: what we send, typed (prediction regions, predictions, tasks, the /predict body);
- events.py: what Label Studio sends us, typed (webhook events, annotations, listed tasks);
- format.py: the label config (checked with label_studio_sdk's LabelInterface), prediction
  building and annotation parsing; boxes.py: pixel xyxy <-> percent xywh;
- similar.py: the similar-lesions regions.

It sits in ml_backend because the HTTP backend answers Label Studio in this format; the
workflow side (`labeler.studio`: project bootstrap, push, sync) uses the same functions.
"""
