"""The cluster's settings, the config it exports at /arvados/v1/config, and the discovery document's live keys."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Dict, Tuple


@dataclass
class Settings:
    """The cluster configuration values the double acts on (names follow config.default.yml)."""

    uuid_prefix: str = "zzzzz"
    blob_signing_key: bytes = field(default_factory=lambda: secrets.token_hex(32).encode())
    blob_signing_ttl: int = 336 * 3600  # Collections.BlobSigningTTL
    default_replication: int = 2  # Collections.DefaultReplication
    default_trash_lifetime: int = 336 * 3600  # Collections.DefaultTrashLifetime
    max_items_per_response: int = 1000  # API.MaxItemsPerResponse
    max_request_size: int = 134217728  # API.MaxRequestSize
    max_retry_attempts: int = 3  # Containers.MaxRetryAttempts
    docker_image_formats: Tuple[str, ...] = ("v2",)  # Containers.SupportedDockerImageFormats
    default_keep_cache_ram: int = 0  # Containers.DefaultKeepCacheRAM
    # $enable_workflow_collection_linking_for_tests: off on a 3.2.1 cluster (workflow.rb), so a
    # workflow's collection_uuid "must be null"; on, workflows follow their linked collection.
    workflow_collection_linking: bool = False
    revision: str = "20250402"  # the discovery document's; clients compare it to enable features


def _go_duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60}m{rest % 60}s"


def exported_config(settings: Settings, controller_url: str, keep_url: str) -> Dict[str, Any]:
    """The part of the cluster config the controller exports (lib/config/export.go) that clients read."""
    service = lambda url="": {"ExternalURL": url, "InternalURLs": {}}  # noqa: E731
    return {
        "ClusterID": settings.uuid_prefix,
        "API": {"MaxItemsPerResponse": settings.max_items_per_response, "MaxRequestSize": settings.max_request_size,
                "RequestTimeout": "5m0s", "SendTimeout": "1m0s", "FreezeProjectRequiresDescription": False,
                "FreezeProjectRequiresProperties": {}, "UnfreezeProjectRequiresAdmin": False},
        "Collections": {"BlobSigning": True, "BlobSigningTTL": _go_duration(settings.blob_signing_ttl),
                        "CollectionVersioning": False, "DefaultReplication": settings.default_replication,
                        "DefaultTrashLifetime": _go_duration(settings.default_trash_lifetime),
                        "ForwardSlashNameSubstitution": "", "ManagedProperties": {}, "PreserveVersionIfIdle": "10s",
                        "S3FolderObjects": True, "TrustAllContent": False},
        "Containers": {"AlwaysUsePreemptibleInstances": False, "DefaultKeepCacheRAM": settings.default_keep_cache_ram,
                       "MaximumPriceFactor": 1.5, "MaxRetryAttempts": settings.max_retry_attempts,
                       "MinRetryPeriod": "0s", "ReserveExtraRAM": 576716800, "RuntimeEngine": "docker",
                       "ShellAccess": {"Admin": False, "User": False},
                       "SupportedDockerImageFormats": {fmt: {} for fmt in settings.docker_image_formats}},
        "InstanceTypes": {},
        "Login": {"Google": {"Enable": False}, "LDAP": {"Enable": False}, "LoginCluster": "",
                  "OpenIDConnect": {"Enable": False}, "PAM": {"Enable": False}, "RemoteTokenRefresh": "5m0s",
                  "Test": {"Enable": True}},
        "RemoteClusters": {"*": {"ActivateUsers": False, "Host": "", "Insecure": False, "Proxy": False,
                                 "Scheme": "https"}},
        "Services": {"Controller": service(controller_url), "Keepproxy": service(keep_url), "Keepstore": service(),
                     "WebDAV": service(), "WebDAVDownload": service(), "Websocket": service(), "Workbench1": service(),
                     "Workbench2": service(), "ContainerWebServices": service(), "DispatchCloud": service(),
                     "DispatchLSF": service(), "DispatchSLURM": service(), "Health": service(), "RailsAPI": service()},
        "StorageClasses": {"default": {"Default": True, "Priority": 0}},
        "TLS": {"Insecure": True},
        "Users": {"AnonymousUserToken": "", "CanCreateRoleGroups": True, "SupportEmailAddress": "",
                  "SyncIgnoredGroups": [], "SyncRequiredGroups": [], "SyncUserAccounts": True,
                  "SyncUserAPITokens": True, "SyncUserGroups": True, "SyncUserSSHKeys": True},
        "Volumes": {},
        "Workbench": {"SiteName": "Arvados test double", "ArvadosDocsite": "https://doc.arvados.org",
                      "DisableSharingURLsUI": False, "EnableGettingStartedPopup": False},
    }


def discovery_live_keys(settings: Settings, root_url: str, package_version: str, generated_at: str) -> Dict[str, Any]:
    """The keys the API server adds to the static discovery document (SchemaController#discovery_doc)."""
    return {
        "revision": settings.revision,
        "source_version": "test-double", "sourceVersion": "test-double", "packageVersion": package_version,
        "generatedAt": generated_at,
        "defaultCollectionReplication": settings.default_replication,
        "rootUrl": root_url, "baseUrl": root_url + "arvados/v1/", "basePath": "/arvados/v1/",
        "servicePath": "arvados/v1/", "batchPath": "batch",
        "uuidPrefix": settings.uuid_prefix,
        "defaultTrashLifetime": settings.default_trash_lifetime,
        "blobSignatureTtl": settings.blob_signing_ttl,
        "maxRequestSize": settings.max_request_size,
        "maxItemsPerResponse": settings.max_items_per_response,
        "dockerImageFormats": list(settings.docker_image_formats),
        "crunchLogUpdatePeriod": 1800, "crunchLogUpdateSize": 33554432,
        "remoteHosts": {}, "remoteHostsViaDNS": False,
        "websocketUrl": "", "workbenchUrl": "", "workbench2Url": "", "keepWebServiceUrl": "",
    }
