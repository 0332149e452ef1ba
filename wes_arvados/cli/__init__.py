"""The `wes-arvados` command: serve, pull, cache (and the --server client of pull)."""
