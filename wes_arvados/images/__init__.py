"""Container images: references, manifests and platforms, registries, archives and a pull that composes them."""
