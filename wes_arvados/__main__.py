"""`python -m wes_arvados` is the `wes-arvados` command."""

from .cli.main import entry

entry()
