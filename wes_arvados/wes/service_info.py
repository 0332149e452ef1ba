"""The GA4GH service-info document of this server."""

from __future__ import annotations

from typing import Any, Dict

from .. import __version__
from ..config import Config
from .backend import Backend
from .submission import CWL_VERSIONS


def service_info(backend: Backend, config: Config) -> Dict[str, Any]:
    """Everything GetServiceInfo reports, with live state counts."""
    return {
        "id": "org.arvados.wes-arvados",
        "name": "wes-arvados",
        "type": {"group": "org.ga4gh", "artifact": "wes", "version": "1.1.0"},
        "description": f"GA4GH WES 1.1 server, {config.backend} backend",
        "organization": {"name": "wes-arvados", "url": "https://pypi.org/project/wes-arvados/"},
        "documentationUrl": "https://pypi.org/project/wes-arvados/",
        "environment": config.backend,
        "version": __version__,
        "workflow_type_versions": {"CWL": {"workflow_type_version": list(CWL_VERSIONS)}},
        "supported_wes_versions": ["1.1.0"],
        "supported_filesystem_protocols": backend.filesystem_protocols(),
        "workflow_engine_versions": {
            name: {"workflow_engine_version": versions} for name, versions in backend.engine_versions().items()
        },
        "default_workflow_engine_parameters": backend.default_engine_parameters(),
        "system_state_counts": backend.state_counts(),
        "auth_instructions_url": "https://pypi.org/project/wes-arvados/#authentication",
        "tags": {"backend": config.backend, "max_concurrent_runs": str(config.max_concurrent_runs)},
    }
