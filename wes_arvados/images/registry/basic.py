"""HTTP Basic authentication for registries that ask for it."""

from __future__ import annotations

import base64

from .credentials import AuthConfig


def basic_header(auth: AuthConfig) -> str:
    """The Authorization header value for a username and password."""
    return "Basic " + base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
