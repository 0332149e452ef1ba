"""The one HTTP session factory of the registry client."""

from __future__ import annotations

from typing import Any, Dict, Optional
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from .options import RegistryOptions
from .scheme import is_loopback

# Layers download in parallel; keep enough connections per host for that.
POOL_SIZE = 32


class RegistrySession(requests.Session):
    """A requests session that takes HTTP(S)_PROXY and NO_PROXY from the environment,
    but never sends loopback traffic to a proxy (as Go's http.ProxyFromEnvironment)."""

    def merge_environment_settings(self, url: Optional[str], proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> Dict[str, Any]:
        """requests' settings for `url`, without proxies when it is on loopback."""
        if verify is None and self.verify is not True:
            # requests lets REQUESTS_CA_BUNDLE override a session's own CA bundle; the option must win.
            verify = self.verify
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if url and is_loopback(urlsplit(url).netloc.rsplit("@", 1)[-1]):
            settings["proxies"] = {}
        return settings


def make_session(options: RegistryOptions) -> requests.Session:
    """A session with the CA bundle, proxies from the environment and pooled connections."""
    session = RegistrySession()
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=POOL_SIZE, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.verify = options.ca_bundle or True
    session.trust_env = True  # HTTP(S)_PROXY and NO_PROXY; also REQUESTS_CA_BUNDLE when ca_bundle is unset
    session.headers["User-Agent"] = options.user_agent
    return session
