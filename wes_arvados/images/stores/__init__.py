"""Image stores: where pulled images are kept for the engine: Keep here (keep.py); the local runtime's is local/image_store.py."""

from .base import ImageStore, StoredImage

__all__ = ["ImageStore", "StoredImage"]
