"""`python -m labeler.cli`: the same CLI, for child processes that need this interpreter."""

from labeler.cli import run

run()
