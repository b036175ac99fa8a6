"""`python -m zmr ...` is the `zmr` command."""

from zmr.cli import entry

entry()
