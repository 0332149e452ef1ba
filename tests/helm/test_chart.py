"""The Helm chart (helm/wes-arvados): lint, render for both backends, validate every object, refuse what cannot work.

The real Helm (tests/helm/get_helm.py puts it in .venv/bin/helm) and the Kubernetes
schemas of kubernetes-validate, offline.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from wes_arvados.config import load_config
from wes_arvados.errors import ConfigError

from ..wes import ROOT, require

CHART = ROOT / "helm" / "wes-arvados"
ARVADOS_VALUES = ROOT / "helm" / "examples" / "arvados-values.yaml"
HELM = Path(sys.executable).with_name("helm")
KUBERNETES = "1.30.0"  # the oldest Kubernetes the chart is checked against; its APIs are all GA there


def _helm(*args: str) -> subprocess.CompletedProcess:
    require(HELM.exists(), f"{HELM} is missing (make install-test, or python tests/helm/get_helm.py {HELM})")
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)


def _render(*args: str) -> List[Dict[str, Any]]:
    done = _helm("template", "wes", str(CHART), *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _kind(objects: List[Dict[str, Any]], kind: str) -> Dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, [o["kind"] for o in objects]
    return found[0]


@pytest.mark.parametrize("values", [[], ["-f", str(ARVADOS_VALUES)]], ids=["defaults", "arvados-example"])
def test_the_chart_lints_and_every_rendered_object_validates(values: List[str]) -> None:
    import kubernetes_validate

    linted = _helm("lint", "--strict", str(CHART), *values)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    objects = _render(*values)
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)  # raises, naming the field, if one is wrong
    kinds = sorted(o["kind"] for o in objects)
    if values:
        assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress", "PodDisruptionBudget",
                         "Service"]
    else:
        assert kinds == ["ConfigMap", "Deployment", "PersistentVolumeClaim", "Secret", "Service"]


def test_a_broken_object_fails_validation() -> None:
    import kubernetes_validate

    service = _kind(_render(), "Service")
    service["spec"]["ports"][0]["port"] = "eighty"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES, strict=True)


@pytest.mark.parametrize("values,message", [
    (["--set", "replicaCount=2"], "backend: local keeps its state on one PersistentVolumeClaim and runs one replica"),
    (["--set", "autoscaling.enabled=true"], "backend: local runs one replica"),
    (["--set", "backend=arvados"], "backend: arvados needs arvados.apiHost"),
    (["--set", "backend=slurm"], "value must be one of 'local', 'arvados'"),
    (["--set", "server.workers=0"], "minimum"),
    (["--set", "replicas=3"], "additional properties 'replicas' not allowed"),
    (["--set", "auth.oidc.issuer=https://id.example.org"], "auth.oidc.issuer needs auth.oidc.audience"),
])
def test_the_chart_refuses_what_cannot_work_with_a_clear_message(values: List[str], message: str) -> None:
    done = _helm("template", "wes", str(CHART), *values)
    assert done.returncode != 0 and message in done.stderr, done.stderr


@pytest.mark.parametrize("values", [[], ["-f", str(ARVADOS_VALUES)]], ids=["defaults", "arvados-example"])
def test_the_pod_is_locked_down_and_its_config_is_one_the_server_accepts(values: List[str], tmp_path: Path) -> None:
    objects = _render(*values)
    pod = _kind(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/var/lib/wes-arvados", "/var/cache/wes-arvados", "/tmp"} <= mounts
    assert not any("docker.sock" in str(v) for v in pod["volumes"])

    config_file = tmp_path / "config.yaml"
    config_file.write_text(_kind(objects, "ConfigMap")["data"]["config.yaml"])
    host = container["args"][container["args"].index("--host") + 1]
    environ = {"ARVADOS_API_HOST": ""}
    if not values:
        # The server listens beyond loopback, so it needs authentication: the operator token the chart made.
        with pytest.raises(ConfigError, match="authentication is off"):
            load_config(str(config_file), {"host": host}, environ=environ)
        secret = _kind(objects, "Secret")
        token = base64.b64decode(secret["data"]["tokens"]).decode()
        assert len(token) >= 40 and secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
        assert env["WES_ARVADOS_AUTH_TOKENS"] == {"name": secret["metadata"]["name"], "key": "tokens"}
        environ["WES_ARVADOS_AUTH_TOKENS"] = token
    config = load_config(str(config_file), {"host": host}, environ=environ)
    assert config.state_dir == "/var/lib/wes-arvados" and config.log_format == "json"
    if values:
        assert (config.backend, config.arvados.api_host) == ("arvados", "zzzzz.arvadosapi.com")
        assert config.images.registry_config == "/etc/wes-arvados/registry/config.json"
        registry = next(v for v in pod["volumes"] if v["name"] == "registry")
        assert registry["secret"]["secretName"] == "wes-arvados-registry"
    else:
        assert (config.backend, config.images.runtime) == ("local", "none")
        state = next(v for v in pod["volumes"] if v["name"] == "state")
        assert state["persistentVolumeClaim"]["claimName"] == _kind(objects, "PersistentVolumeClaim")["metadata"]["name"]


def test_registry_credentials_given_as_a_file_become_a_secret_mounted_read_only(tmp_path: Path) -> None:
    config_json = '{"auths": {"registry.example.org": {"auth": "dXNlcjpwYXNz"}}}'
    (tmp_path / "config.json").write_text(config_json)
    objects = _render("--set-file", f"registryCredentials.dockerConfigJson={tmp_path / 'config.json'}")
    secret = next(o for o in objects if o["kind"] == "Secret" and "config.json" in o["data"])
    assert base64.b64decode(secret["data"]["config.json"]).decode() == config_json
    container = _kind(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "registry")
    assert mount["readOnly"] is True
    config = yaml.safe_load(_kind(objects, "ConfigMap")["data"]["config.yaml"])
    assert config["images"]["registry_config"] == mount["mountPath"] + "/config.json"


def test_the_readme_describes_every_value_of_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    readme = (ROOT / "README.rst").read_text()

    def names(properties: Dict[str, Any], prefix: str = "") -> List[str]:
        found = []
        for key, spec in properties.items():
            if spec.get("type") == "object" and "properties" in spec:
                found += names(spec["properties"], prefix + key + ".")
            else:
                assert spec.get("description"), f"{prefix}{key} has no description in values.schema.json"
                found.append(prefix + key)
        return found

    missing = [name for name in names(schema["properties"]) if f"``{name}``" not in readme]
    assert missing == []


def test_users_from_a_token_file_secret_or_an_oidc_issuer_replace_the_made_operator_token(tmp_path: Path) -> None:
    objects = _render("--set", "auth.tokenFileSecret=wes-users", "--set", "auth.adminUsers={alice}")
    assert not [o for o in objects if o["kind"] == "Secret"]
    pod = _kind(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert not [e for e in container["env"] if e["name"].startswith("WES_ARVADOS_AUTH")]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "auth-tokens")
    volume = next(v for v in pod["volumes"] if v["name"] == "auth-tokens")
    assert mount["readOnly"] is True and volume["secret"]["secretName"] == "wes-users"
    config = yaml.safe_load(_kind(objects, "ConfigMap")["data"]["config.yaml"])
    assert config["auth_token_file"] == mount["mountPath"] + "/" + volume["secret"]["items"][0]["path"]
    assert config["admin_users"] == ["alice"]

    objects = _render("--set", "auth.oidc.issuer=https://id.example.org", "--set", "auth.oidc.audience=wes")
    assert not [o for o in objects if o["kind"] == "Secret"]
    config_file = tmp_path / "config.yaml"
    config_file.write_text(_kind(objects, "ConfigMap")["data"]["config.yaml"])
    config = load_config(str(config_file), {"host": "0.0.0.0"}, environ={})
    assert (config.oidc_issuer, config.oidc_audience, config.oidc_user_claim) == ("https://id.example.org", "wes", "sub")
