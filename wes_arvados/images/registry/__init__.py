"""Talking to an OCI distribution registry: one small module per concern.

``client.Repository`` is the facade; ``scheme`` picks http or https, ``session`` is
the registry's face of ``wes_arvados.http`` (urllib3: connections pooled per origin,
proxies, CA bundle), ``challenge`` reads WWW-Authenticate, ``auth``
chooses the Authorization per endpoint, ``basic`` and ``bearer`` authenticate, ``retry`` retries,
``resumable`` resumes broken blob downloads, ``mirror`` orders endpoints,
``credentials`` reads Docker's config.json, ``errors`` turns failures into
`RegistryError` messages that name the image and the registry.
"""

from .client import Repository
from .credentials import AuthConfig, Credentials
from .options import RegistryOptions

__all__ = ["AuthConfig", "Credentials", "RegistryOptions", "Repository"]
