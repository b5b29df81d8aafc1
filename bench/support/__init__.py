"""Builders and harnesses shared by the benchmarks and the tests: a seeded home, registered
models, stored pre-labels, a loopback HTTP server, a Label Studio stand-in, process helpers.

They live here, not under tests/, because a benchmark must not import test code (the
import-linter contract in pyproject.toml); the tests import them from here.
"""
