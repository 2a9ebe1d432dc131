"""deploy/: the compose file, the Kubernetes manifests and the image are valid and agree
with the code (commands that exist, settings that are declared, packages that are copied).

No Docker engine or cluster here: the files are checked against the Compose
specification's and Kubernetes' own schemas, and every command they run is parsed by
the real `proxima` command line.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from contracts.services import ServiceSettings
from edge.settings import EdgeSettings
from notifier.settings import NotifierSettings
from stream.bookings_api import BookingsApiSettings
from stream.settings import StreamSettings

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
K8S = DEPLOY / "k8s"
BIN = Path(sys.executable).parent


def _declared_env() -> set[str]:
    names = set()
    settings: list[type[BaseSettings]] = [
        ServiceSettings,
        StreamSettings,
        NotifierSettings,
        EdgeSettings,
        BookingsApiSettings,
    ]
    for cls in settings:
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            names.add(alias.upper() if isinstance(alias, str) else f"{prefix}{name}".upper())
    return names


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def _pod_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _assert_cli_parses(args: list[str]) -> None:
    result = subprocess.run(
        [str(BIN / "proxima"), *args, "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"proxima {' '.join(args)}: {result.stderr}"


def test_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services_run_real_commands_with_declared_settings() -> None:
    compose = _compose()
    ours = {n: s for n, s in compose["services"].items() if s.get("image") == "proxima:latest"}
    assert {"init-topics", "bridge", "stream-worker", "notifier"} <= ours.keys()
    declared = _declared_env()
    for name, service in ours.items():
        _assert_cli_parses(service["command"])
        unknown = set(service["environment"]) - declared
        assert not unknown, f"{name}: undeclared settings {unknown}"


def test_compose_starts_the_services_after_the_topics_exist() -> None:
    for name in ("bridge", "stream-worker", "notifier"):
        deps = _compose()["services"][name]["depends_on"]
        assert deps["init-topics"]["condition"] == "service_completed_successfully", name


def test_kubernetes_manifests_follow_the_kubernetes_schemas() -> None:
    files = [str(p) for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"]
    result = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "--quiet", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl renders the kustomization")
def test_the_kustomization_renders_every_manifest() -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=True
    ).stdout
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(rendered) if d)
    expected = sorted((d["kind"], d["metadata"]["name"]) for d in _k8s_docs())
    assert kinds == expected


def test_kubernetes_pods_run_real_commands_and_create_topics_first() -> None:
    config = next(d for d in _k8s_docs() if d["kind"] == "ConfigMap")
    assert not set(config["data"]) - _declared_env(), "undeclared settings in the ConfigMap"
    deployments = [d for d in _k8s_docs() if d["kind"] in ("Deployment", "StatefulSet")]
    assert {d["metadata"]["name"] for d in deployments} == {
        "proxima-bridge",
        "proxima-stream-worker",
        "proxima-notifier",
        "proxima-bookings-api",
    }
    for doc in deployments:
        for container in _pod_containers(doc):
            _assert_cli_parses(container["args"])
        if doc["metadata"]["name"] == "proxima-bookings-api":
            continue  # Redis only: no topic to wait for
        init = doc["spec"]["template"]["spec"]["initContainers"]
        assert init[0]["args"][:2] == ["topics", "ensure"], doc["metadata"]["name"]


def test_the_image_contains_every_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in include}
    copied = set(re.findall(r"^COPY (\w+) \1$", (DEPLOY / "Dockerfile").read_text(), re.M))
    assert copied == packages


def test_each_bridge_replica_has_its_own_stable_mqtt_client_id() -> None:
    (bridge,) = [
        d
        for d in _k8s_docs()
        if d["metadata"]["name"] == "proxima-bridge" and d["kind"] != "Service"
    ]
    assert bridge["kind"] == "StatefulSet"  # pod names survive restarts: the session too
    assert bridge["spec"]["replicas"] >= 2
    (container,) = bridge["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    source = env["PROXIMA_STREAM_BRIDGE_CLIENT_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert source == "metadata.name"
    assert "PROXIMA_STREAM_BRIDGE_CLIENT_ID" in _declared_env()


def test_the_console_is_served_over_https_by_an_ingress() -> None:
    (ingress,) = [d for d in _k8s_docs() if d["kind"] == "Ingress"]
    (tls,) = ingress["spec"]["tls"]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] in tls["hosts"]
    assert tls["secretName"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    (service,) = [
        d
        for d in _k8s_docs()
        if d["kind"] == "Service" and d["metadata"]["name"] == backend["name"]
    ]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    config = next(d for d in _k8s_docs() if d["kind"] == "ConfigMap")
    assert config["data"]["PROXIMA_NOTIFIER_COOKIE_SECURE"] == "true"


def test_the_console_reaches_the_bookings_api_with_its_secret() -> None:
    """The manager's Bookings panel: the notifier is given the bookings API's address and
    secret wherever the bookings API runs (compose and Kubernetes)."""
    services = _compose()["services"]
    notifier_env = services["notifier"]["environment"]
    port = services["bookings-api"]["environment"]["PROXIMA_BOOKINGS_API_PORT"]
    assert notifier_env["PROXIMA_NOTIFIER_BOOKINGS_API_URL"] == f"http://bookings-api:{port}"
    assert notifier_env["PROXIMA_NOTIFIER_BOOKINGS_API_SECRET"].startswith(
        "${PROXIMA_BOOKINGS_API_SECRET:?"
    )
    docs = _k8s_docs()
    notifier = next(d for d in docs if d["metadata"]["name"] == "proxima-notifier"
                    and d["kind"] == "Deployment")  # fmt: skip
    container = next(c for c in _pod_containers(notifier) if c["name"] == "notifier")
    env = {e["name"]: e for e in container["env"]}
    assert set(env) <= _declared_env()
    service = next(d for d in docs if d["kind"] == "Service"
                   and d["metadata"]["name"] == "proxima-bookings-api")  # fmt: skip
    assert env["PROXIMA_NOTIFIER_BOOKINGS_API_URL"]["value"] == (
        f"http://{service['metadata']['name']}"
    )
    assert service["spec"]["ports"][0]["port"] == 80
    secret = env["PROXIMA_NOTIFIER_BOOKINGS_API_SECRET"]["valueFrom"]["secretKeyRef"]
    held = next(
        d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == secret["name"]
    )
    assert secret["key"] in held["stringData"]
    assert secret["key"] == "PROXIMA_BOOKINGS_API_SECRET"
