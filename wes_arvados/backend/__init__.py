"""Backends: everything the web layer can ask of a workflow system."""

from __future__ import annotations

from ..config import Config
from .base import Backend


def make_backend(config: Config) -> Backend:
    """Build the backend the configuration names."""
    if config.backend == "local":
        from ..local.backend import LocalBackend

        return LocalBackend(config)
    raise ValueError(f"unknown backend {config.backend!r}")  # Config.validate prevents this


__all__ = ["Backend", "make_backend"]
