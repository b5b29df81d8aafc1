"""Label Studio's JSON, in one place: label config, prediction regions, annotation parsing.

It sits in ml_backend because the HTTP backend answers Label Studio in this format; the
workflow side (`labeler.studio`: project bootstrap, push, sync) uses the same functions.
"""
