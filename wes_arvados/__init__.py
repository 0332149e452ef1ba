"""wes-arvados: a GA4GH WES 1.1 server for Arvados and for this machine."""

__version__ = "0.1.0"
