"""deploy/k8s/: every manifest validates against the Kubernetes API schemas (kubernetes-validate,
strict), and what the manifests say matches the code: real settings, real commands, the probes on
the real endpoints, secrets only by reference, and a valid production configuration per container."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from finverse_reco.cli import build_parser
from finverse_reco.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
SECRET_KEYS = {
    "FINVERSE_API_KEY",
    "FINVERSE_WRITER_API_KEYS",
    "FINVERSE_ERASURE_KEY",
    "FINVERSE_STORE_URL",
    "FINVERSE_RABBITMQ_URL",
}
# What the Secret named finverse-secrets holds in a real cluster (placeholders for the check).
SECRET_VALUES = {
    "api-key": "k" * 48,
    "writer-api-keys": '["' + "w" * 48 + '"]',
    "erasure-key": "e" * 48,
    "store-url": "mongodb://reco:secret@m1,m2,m3/finverse_interactions?replicaSet=rs0",
    "rabbitmq-url": "amqp://finverse:secret@rabbitmq:5672/",
}


def documents() -> list[tuple[str, dict]]:
    return [
        (path.name, document)
        for path in MANIFESTS
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def by_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in documents() if doc["kind"] == kind}


def pod_specs() -> dict[str, dict]:
    """Every pod template: Deployments, Jobs and the CronJob's."""
    specs = {}
    for _, doc in documents():
        if doc["kind"] in ("Deployment", "Job"):
            specs[doc["metadata"]["name"]] = doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            specs[doc["metadata"]["name"]] = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return specs


def test_there_are_manifests_for_every_part():
    kinds = {(doc["kind"], doc["metadata"]["name"]) for _, doc in documents()}
    assert {
        ("Deployment", "finverse-serve"),
        ("Deployment", "finverse-consume"),
        ("CronJob", "finverse-train"),
        ("Service", "finverse-serve"),
        ("HorizontalPodAutoscaler", "finverse-serve"),
        ("PodDisruptionBudget", "finverse-serve"),
        ("ConfigMap", "finverse-config"),
    } <= kinds


@pytest.mark.parametrize(
    ("name", "document"), documents(), ids=lambda v: v if isinstance(v, str) else v["kind"]
)
def test_every_manifest_validates_strictly_against_the_api_schemas(name, document):
    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(document, version, strict=True)  # raises ValidationError


def container_environment(container: dict) -> dict[str, str]:
    """The FINVERSE_ variables a container gets: the ConfigMap, its env, the Secret's values."""
    config = by_kind("ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config[source["configMapRef"]["name"]]["data"])
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            reference = variable["valueFrom"]["secretKeyRef"]
            assert reference["name"] == "finverse-secrets"
            env[variable["name"]] = SECRET_VALUES[reference["key"]]
    return {k: v for k, v in env.items() if k.startswith("FINVERSE_")}


@pytest.mark.parametrize("workload", sorted(pod_specs()))
def test_every_container_is_a_real_command_with_a_valid_production_configuration(
    workload, monkeypatch
):
    for container in pod_specs()[workload]["containers"]:
        build_parser().parse_args(container["args"])  # exits 2 on anything the CLI does not know
        env = container_environment(container)
        fields = {f"FINVERSE_{name.upper()}" for name in Settings.model_fields}
        assert set(env) <= fields, set(env) - fields
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings(_env_file=None)
        assert settings.environment == "production"
        assert settings.artifacts == "store", "pods share no disk: models come from the store"
        requests = container["resources"]["requests"]
        assert {"cpu", "memory"} <= requests.keys()
        assert "memory" in container["resources"]["limits"]


def test_secrets_are_only_referenced():
    for workload, spec in pod_specs().items():
        for container in spec["containers"]:
            for variable in container.get("env", []):
                if variable["name"] in SECRET_KEYS:
                    assert "valueFrom" in variable, (workload, variable["name"])
    assert not SECRET_KEYS & set(by_kind("ConfigMap")["finverse-config"]["data"])


def test_serve_probes_its_health_and_readiness_and_the_scalers_target_it():
    serve = by_kind("Deployment")["finverse-serve"]
    (container,) = serve["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    labels = serve["spec"]["template"]["metadata"]["labels"]
    assert by_kind("Service")["finverse-serve"]["spec"]["selector"] == labels
    assert (
        by_kind("PodDisruptionBudget")["finverse-serve"]["spec"]["selector"]["matchLabels"]
        == labels
    )
    target = by_kind("HorizontalPodAutoscaler")["finverse-serve"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "finverse-serve")
    # The model cache and /tmp (metrics of the workers, a refresh's result file) are writable
    # volumes under a read-only root filesystem.
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/cache", "/tmp"} <= mounts and container["securityContext"]["readOnlyRootFilesystem"]
    env = container_environment(container)
    assert env["FINVERSE_MODEL_DIR"].startswith("/cache/")
