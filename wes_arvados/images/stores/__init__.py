"""Image stores: where pulled images are kept for the engine (the local runtime now, Keep later)."""

from .base import ImageStore, StoredImage

__all__ = ["ImageStore", "StoredImage"]
