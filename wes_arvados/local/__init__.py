"""The embedded local backend: cwltool on this machine, state in SQLite and run directories."""
