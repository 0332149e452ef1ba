"""The one HTTP session factory of the registry client."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter

from .options import RegistryOptions

# Layers download in parallel; keep enough connections per host for that.
POOL_SIZE = 32


def make_session(options: RegistryOptions) -> requests.Session:
    """A session with the CA bundle, proxies from the environment and pooled connections."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=POOL_SIZE, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.verify = options.ca_bundle or True
    session.trust_env = True  # HTTP(S)_PROXY and NO_PROXY
    session.headers["User-Agent"] = options.user_agent
    return session
