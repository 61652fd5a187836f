"""`python -m ichscan.cli`: the same command as `ichscan`."""

from ichscan.cli import app

app()
