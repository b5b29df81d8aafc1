"""The bottom layer: settings, the BI-RADS taxonomy and the error type every package shares.

Every package may import `core`; `core` imports none of them (and nothing heavier than pydantic).
"""
