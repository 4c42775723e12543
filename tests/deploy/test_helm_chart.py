"""The Helm chart deploy/helm/avatar-gateway, checked offline (no cluster, no network).

helm is built from its Go module (tools/build_helm.sh, pinned); the chart must pass
`helm lint --strict`, render with the default and the production-like values, and every
rendered object must pass `kubernetes-validate --strict` against the schemas of the oldest
Kubernetes the chart supports (1.25) and the newest one kubernetes-validate knows. Then the
rendered objects are checked for what the chart promises: three ports (gRPC, public callbacks,
internal ops), HTTP probes on the ops port, a gRPC transport chosen explicitly (TLS and mutual
TLS from whole Secret volumes, or plaintext), the API keys file from a Secret volume, a
termination grace period that covers the drain, the security context, secrets mounted as files
and nowhere else, the headless Service, the Ingress and NetworkPolicy ports, PDB/HPA, the Redis
requirement of several replicas, the config checksum. Each check is also run against a
deliberately wrong rendering, to show it can fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "avatar-gateway"
PROD_VALUES = CHART / "ci" / "production-values.yaml"
RELEASE = "avatar"
NAMESPACE = "avatar-ns"
GRPC_PORT = 50051
CALLBACKS_PORT = 8080
OPS_PORT = 8081
OLDEST_KUBERNETES = "1.25.0"
# Where the chart mounts the TLS, client CA and API keys Secrets (beside secretsDir).
TLS_DIR = "/var/run/secrets/avatar-gateway-tls"
CLIENT_CA_DIR = "/var/run/secrets/avatar-gateway-client-ca"
API_KEYS_DIR = "/var/run/secrets/avatar-gateway-api-keys"
# The variables the chart sets itself; `config` must refuse them.
CHART_OWNED = (
    "AVATAR_GATEWAY_LISTEN",
    "AVATAR_GATEWAY_OPS_LISTEN",
    "AVATAR_GATEWAY_CALLBACKS_LISTEN",
    "AVATAR_GATEWAY_PUBLIC_URL",
    "AVATAR_GATEWAY_SECRETS_DIR",
    "AVATAR_GATEWAY_SHUTDOWN_GRACE_S",
    "AVATAR_GATEWAY_REDIS_URL",
    "AVATAR_GATEWAY_WORKERS",
    "AVATAR_GATEWAY_PLAINTEXT",
    "AVATAR_GATEWAY_TLS_CERT_FILE",
    "AVATAR_GATEWAY_TLS_KEY_FILE",
    "AVATAR_GATEWAY_TLS_CLIENT_CA_FILE",
    "AVATAR_GATEWAY_API_KEYS_FILE",
)

# A cold build of helm takes a few minutes; it runs in the first test's setup.
pytestmark = [pytest.mark.deploy, pytest.mark.timeout(900)]

# Secret values of a rendering with the chart-made Secret: none may appear outside it.
SENTINELS = {
    "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET": "sentinel-zego-server-secret-5f1c",
    "AVATAR_GATEWAY_ZEGOCLOUD__CALLBACK_SECRET": "sentinel-zego-callback-secret-93aa",
    "AVATAR_GATEWAY_TENCENT__ACCESS_TOKEN": "sentinel-tencent-token-0b7e",
    "AVATAR_GATEWAY_REDIS_URL": "redis://:sentinel-redis-password-77d2@redis:6379/0",
}
SECRET_VALUES = [f"secrets.{k}={v}" for k, v in SENTINELS.items()]

Docs = list[dict[str, Any]]


# ---------------------------------------------------------------- tools


@pytest.fixture(scope="session")
def helm() -> str:
    """The pinned helm, built by tools/build_helm.sh; a failed build fails the tests."""
    proc = subprocess.run(
        ["bash", str(ROOT / "tools" / "build_helm.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"tools/build_helm.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}",
            pytrace=False,
        )
    binary = os.environ.get("HELM_BIN") or str(ROOT / ".cache" / "bin" / "helm")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"tools/build_helm.sh succeeded but {binary} is not executable")
    return binary


@cache
def _kubernetes_validate() -> str:
    exe = Path(sys.executable).parent / "kubernetes-validate"
    found = str(exe) if exe.exists() else shutil.which("kubernetes-validate")
    if found is None:
        pytest.fail("kubernetes-validate is not installed (pip install -e '.[dev]')")
    return found


@cache
def _offline_prefix() -> tuple[str, ...]:
    """`unshare -n` (no network) when this user may use it; otherwise nothing, said loudly."""
    unshare = shutil.which("unshare")
    if unshare is not None:
        probe = subprocess.run([unshare, "-n", "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return (unshare, "-n")
    warnings.warn(
        "unshare -n is not permitted here: kubernetes-validate runs WITH network access "
        "(it should not need it: its schemas are bundled)",
        stacklevel=2,
    )
    print("NOTE: kubernetes-validate runs without network isolation (unshare -n not permitted)")
    return ()


def _kubernetes_versions() -> list[str]:
    """The oldest version the chart supports and the newest kubernetes-validate knows."""
    from kubernetes_validate.utils import all_versions, latest_version

    known = set(all_versions())
    assert OLDEST_KUBERNETES in known, f"kubernetes-validate has no schema for {OLDEST_KUBERNETES}"
    newest = latest_version()
    assert tuple(int(p) for p in newest.split(".")[:2]) >= (1, 37), (
        f"kubernetes-validate's newest schema is {newest}; expected 1.37 or later (its pin)"
    )
    return [OLDEST_KUBERNETES, newest]


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    # No kubeconfig: rendering must not depend on (or reach) a cluster.
    env = {**os.environ, "KUBECONFIG": os.devnull}
    return subprocess.run([helm, *args], capture_output=True, text=True, env=env, check=False)


def render_text(helm: str, *args: str, kube_version: str | None = None) -> str:
    extra = ["--kube-version", kube_version] if kube_version else []
    proc = run_helm(helm, "template", RELEASE, str(CHART), "-n", NAMESPACE, *extra, *args)
    assert proc.returncode == 0, f"helm template {' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


def render(helm: str, *args: str) -> Docs:
    return [d for d in yaml.safe_load_all(render_text(helm, *args)) if d]


def render_fails(helm: str, *args: str) -> str:
    proc = run_helm(helm, "template", RELEASE, str(CHART), "-n", NAMESPACE, *args)
    assert proc.returncode != 0, f"helm template {' '.join(args)} should have failed"
    return proc.stderr


def sets(*pairs: str) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


def prod(*pairs: str) -> list[str]:
    return ["-f", str(PROD_VALUES), *sets(*pairs)]


def plain(*pairs: str) -> list[str]:
    """The default values with plaintext gRPC chosen (the chart renders nothing without a
    transport), plus ``pairs``."""
    return sets("grpcPlaintext=true", *pairs)


def tls(*pairs: str) -> list[str]:
    """The default values with TLS from the Secret ``gw-tls``, plus ``pairs``."""
    return sets("tls.secretName=gw-tls", *pairs)


def find(docs: Docs, kind: str, name: str | None = None) -> dict[str, Any]:
    hits = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def kinds(docs: Docs) -> set[str]:
    return {d["kind"] for d in docs}


def pod_spec(docs: Docs) -> dict[str, Any]:
    spec: dict[str, Any] = find(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(docs: Docs) -> dict[str, Any]:
    containers = pod_spec(docs)["containers"]
    assert len(containers) == 1
    c: dict[str, Any] = containers[0]
    return c


def config_data(docs: Docs) -> dict[str, str]:
    data: dict[str, str] = find(docs, "ConfigMap")["data"]
    return data


def chart_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


# ---------------------------------------------------------------- checks (reused on bad renders)


def check_probes(docs: Docs) -> None:
    """Three container ports; every probe is plain HTTP on the ops port: /healthz for startup
    and readiness (503 while starting and draining), /livez for liveness (200 while draining).
    Never the gRPC port: the kubelet's gRPC probe cannot pass TLS, let alone mutual TLS."""
    c = container(docs)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": GRPC_PORT, "callbacks": CALLBACKS_PORT, "ops": OPS_PORT}, ports
    expected = {"startupProbe": "/healthz", "readinessProbe": "/healthz", "livenessProbe": "/livez"}
    for probe, path in expected.items():
        spec = c[probe]
        assert set(spec) & {"grpc", "exec", "tcpSocket", "httpGet"} == {"httpGet"}, (
            f"{probe}: {spec}"
        )
        get = spec["httpGet"]
        assert get["path"] == path, f"{probe}: {spec}"
        assert get["port"] in ("ops", OPS_PORT), f"{probe} must probe the ops port: {spec}"
        assert get.get("scheme", "HTTP") == "HTTP", f"{probe}: {spec}"


def mounted_file(docs: Docs, path: str) -> tuple[str, str]:
    """The Secret and key that the file ``path`` of the container comes from.

    The file must be an item of a whole ``secret`` volume mounted read-only at its directory
    (never ``subPath``, which the kubelet never updates), with mode 0440.
    """
    directory, name = path.rsplit("/", 1)
    mounts = [m for m in container(docs)["volumeMounts"] if m["mountPath"] == directory]
    assert len(mounts) == 1, f"{path}: no single mount at {directory}"
    mount = mounts[0]
    assert mount.get("readOnly") is True and "subPath" not in mount, mount
    volume = next(v for v in pod_spec(docs)["volumes"] if v["name"] == mount["name"])
    secret = volume.get("secret")
    assert secret is not None, f"{path}: not a secret volume: {volume}"
    assert secret["defaultMode"] == 0o440, secret
    items = [i for i in secret.get("items", []) if i["path"] == name]
    assert len(items) == 1, f"{path}: {name} is not an item of {secret}"
    return secret["secretName"], items[0]["key"]


def check_mounts_update_in_place(docs: Docs) -> None:
    """No subPath mount (never updated by the kubelet), and no mount inside another one."""
    mounts = container(docs)["volumeMounts"]
    assert not [m for m in mounts if "subPath" in m or "subPathExpr" in m], mounts
    paths = [m["mountPath"].rstrip("/") for m in mounts]
    for a in paths:
        for b in paths:
            assert a == b or not b.startswith(a + "/"), f"{b} is mounted inside {a}"
    assert len(paths) == len(set(paths)), paths


def check_drain(docs: Docs) -> None:
    from gateway.sessions import CLOSE_BUDGET_S

    spec = pod_spec(docs)
    command = container(docs)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", command
    pre_stop = float(command[1])
    grace = float(config_data(docs)["AVATAR_GATEWAY_SHUTDOWN_GRACE_S"])
    period = spec["terminationGracePeriodSeconds"]
    assert period > pre_stop + grace + CLOSE_BUDGET_S, (
        f"terminationGracePeriodSeconds {period} <= preStop {pre_stop} + grace {grace} "
        f"+ close budget {CLOSE_BUDGET_S}"
    )


def check_security(docs: Docs) -> None:
    spec = pod_spec(docs)
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == 10001 and pod["runAsGroup"] == 10001
    assert pod["fsGroup"] == 10001
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(docs)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False  # no AVATAR_GATEWAY_SERVICE_HOST & co.
    # A read-only root filesystem needs a writable /tmp.
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def check_secrets_as_files(docs: Docs, secret_values: list[str]) -> None:
    c = container(docs)
    data = config_data(docs)
    secrets_dir = data["AVATAR_GATEWAY_SECRETS_DIR"]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == secrets_dir)
    assert mount.get("readOnly") is True
    volume = next(v for v in pod_spec(docs)["volumes"] if v["name"] == mount["name"])
    sources = volume["projected"]["sources"]
    assert sources and all("secret" in s for s in sources), sources
    # No secret reaches the environment: not as a value, not through a secretKeyRef.
    for env in c.get("env", []):
        assert "secretKeyRef" not in env.get("valueFrom", {}), env
        assert not any(v in str(env.get("value", "")) for v in secret_values), env
    for source in c.get("envFrom", []):
        assert "secretRef" not in source, source
    # Nor the ConfigMap, nor any other object but the Secret itself.
    for doc in docs:
        if doc["kind"] == "Secret":
            continue
        text = json.dumps(doc)
        leaked = [v for v in secret_values if v in text]
        assert not leaked, f"{doc['kind']} {doc['metadata']['name']} holds secret values {leaked}"
    # No secret setting's name in the ConfigMap (a plain redis.url may be there).
    in_config = set(data) & (set(SENTINELS) - {"AVATAR_GATEWAY_REDIS_URL"})
    assert not in_config, f"secret settings in the ConfigMap: {in_config}"


def check_resources(docs: Docs, values: dict[str, Any]) -> None:
    """Requests and limits follow values.yaml's capacity arithmetic (bench/RESULTS.md)."""
    c = values["capacity"]
    headroom = 100 + c["headroomPercent"]  # percent, integer arithmetic as in the template
    per_second = c["streamsPerPod"] * c["cpuMicrosPerChunk"] * c["chunksPerSecond"]  # µs/s
    cpu_m = -(-per_second * headroom // (1000 * 100))
    workers = int(values.get("workers") or 1)  # each worker process has its own idle heap
    idle_mib = workers * c["idleMemoryMiB"] + (c["supervisorMemoryMiB"] if workers > 1 else 0)
    kib = idle_mib * 1024 + c["streamsPerPod"] * c["memoryKiBPerStream"]
    mem_mib = -(-kib * headroom // (1024 * 100))
    limit_mib = -(-mem_mib * c["memoryLimitPercent"] // 100)
    resources = container(docs)["resources"]
    assert resources["requests"] == {"cpu": f"{cpu_m}m", "memory": f"{mem_mib}Mi"}
    assert resources["limits"] == {"memory": f"{limit_mib}Mi"}


# ---------------------------------------------------------------- lint and schema validation


@pytest.mark.parametrize(
    "values", [plain(), tls(), ["-f", str(PROD_VALUES)]], ids=["plaintext", "tls", "production"]
)
def test_helm_lint_strict(helm: str, values: list[str]) -> None:
    proc = run_helm(helm, "lint", "--strict", str(CHART), *values)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_chart_supports_the_oldest_validated_kubernetes(helm: str) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    # NetworkPolicy endPort (LiveKit's media range) is GA in 1.25; nothing needs 1.27 any more
    # (the probes are HTTP, not native gRPC).
    assert chart["kubeVersion"] == ">=1.25.0-0"
    assert chart["appVersion"] == "0.1.0"
    assert "incompatible" in render_fails(helm, *plain(), "--kube-version", "1.24.0")
    render(helm, *plain(), "--kube-version", OLDEST_KUBERNETES)


RENDERINGS = {
    "plaintext": plain(),
    "sandbox": sets("config.AVATAR_GATEWAY_SANDBOX=true"),
    "mtls-api-keys": tls(
        "tls.clientCA.secretName=gw-client-ca",
        "auth.apiKeys.secretName=gw-api-keys",
        "ingress.enabled=true",
        "networkPolicy.enabled=true",
        "networkPolicy.callbacksFrom[0].namespaceSelector.matchLabels.team=edge",
    ),
    "production": ["-f", str(PROD_VALUES)],
    # Production values with the chart-made Secret instead of existingSecret.
    "production-chart-secret": ["-f", str(PROD_VALUES), *sets("existingSecret=", *SECRET_VALUES)],
}


@pytest.mark.parametrize("kube_version", _kubernetes_versions())
@pytest.mark.parametrize("values", list(RENDERINGS.values()), ids=list(RENDERINGS))
def test_rendered_objects_pass_kubernetes_validate_strict(
    helm: str, tmp_path: Path, values: list[str], kube_version: str
) -> None:
    text = render_text(helm, *values, kube_version=kube_version)
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert {"Deployment", "ConfigMap", "Service", "ServiceAccount"} <= kinds(docs)
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(text)
    proc = subprocess.run(
        [*_offline_prefix(), _kubernetes_validate(), "-k", kube_version, "--strict", str(manifest)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("passed for resource") == len(docs), proc.stdout


def test_kubernetes_validate_rejects_an_unknown_field(helm: str, tmp_path: Path) -> None:
    """The validation above can fail: a misspelt pod field is refused."""
    text = render_text(
        helm, *plain(), "--set-json", 'podSecurityContext={"runAsNonRoot":true,"runAsUsr":1}'
    )
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(text)
    proc = subprocess.run(
        [*_offline_prefix(), _kubernetes_validate(), "-k", OLDEST_KUBERNETES, "--strict"]
        + [str(manifest)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "runAsUsr" in proc.stdout + proc.stderr


# ---------------------------------------------------------------- what the objects promise


@pytest.mark.parametrize(
    "values", [plain(), tls(), ["-f", str(PROD_VALUES)]], ids=["plaintext", "tls", "production"]
)
def test_probes_drain_security_resources(helm: str, values: list[str]) -> None:
    docs = render(helm, *values)
    check_probes(docs)
    check_drain(docs)
    check_security(docs)
    check_resources(docs, chart_values())
    check_mounts_update_in_place(docs)
    data = config_data(docs)
    assert data["AVATAR_GATEWAY_LISTEN"] == f"0.0.0.0:{GRPC_PORT}"
    assert data["AVATAR_GATEWAY_CALLBACKS_LISTEN"] == f"0.0.0.0:{CALLBACKS_PORT}"
    assert data["AVATAR_GATEWAY_OPS_LISTEN"] == f"0.0.0.0:{OPS_PORT}"
    assert data["AVATAR_GATEWAY_SANDBOX"] == "false"
    annotations = find(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(OPS_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_close_budget_value_matches_the_gateway() -> None:
    from gateway.sessions import CLOSE_BUDGET_S

    assert chart_values()["shutdown"]["closeBudgetSeconds"] == CLOSE_BUDGET_S


def test_drain_arithmetic_and_a_too_short_grace_period_fails(helm: str) -> None:
    shutdown = chart_values()["shutdown"]
    expected = sum(
        shutdown[k]
        for k in ("preStopSleepSeconds", "graceSeconds", "closeBudgetSeconds", "marginSeconds")
    )
    assert pod_spec(render(helm, *plain()))["terminationGracePeriodSeconds"] == expected
    longer = render(helm, *plain("shutdown.graceSeconds=45", "shutdown.preStopSleepSeconds=10"))
    check_drain(longer)
    assert pod_spec(longer)["terminationGracePeriodSeconds"] == expected + 25 + 5
    err = render_fails(helm, *plain("shutdown.terminationGracePeriodSeconds=30"))
    assert "shorter than the drain needs" in err


def test_check_drain_catches_a_short_grace_period(helm: str) -> None:
    docs = render(helm, *plain())
    pod_spec(docs)["terminationGracePeriodSeconds"] = 50  # 5 + 20 + 30 = 55 would be needed
    with pytest.raises(AssertionError, match="terminationGracePeriodSeconds"):
        check_drain(docs)


@pytest.mark.parametrize(
    "override",
    [
        "securityContext.readOnlyRootFilesystem=false",
        "podSecurityContext.runAsUser=0",
        "securityContext.allowPrivilegeEscalation=true",
    ],
)
def test_check_security_catches_a_weakened_context(helm: str, override: str) -> None:
    with pytest.raises(AssertionError):
        check_security(render(helm, *plain(override)))


@pytest.mark.parametrize(
    ("probe", "wrong"),
    [
        ("readinessProbe", {"grpc": {"port": GRPC_PORT}}),  # the old native gRPC probe
        ("startupProbe", {"grpc": {"port": GRPC_PORT}}),
        ("livenessProbe", {"httpGet": {"path": "/healthz", "port": "ops"}}),  # 503 on drain
        ("readinessProbe", {"httpGet": {"path": "/livez", "port": "ops"}}),  # 200 on drain
        ("readinessProbe", {"httpGet": {"path": "/healthz", "port": "callbacks"}}),
        ("livenessProbe", {"httpGet": {"path": "/livez", "port": GRPC_PORT}}),
    ],
    ids=[
        "grpc-readiness",
        "grpc-startup",
        "liveness-healthz",
        "readiness-livez",
        "readiness-callbacks-port",
        "liveness-grpc-port",
    ],
)
def test_check_probes_catches_a_wrong_probe(helm: str, probe: str, wrong: dict[str, Any]) -> None:
    docs = render(helm, *plain())
    check_probes(docs)
    container(docs)[probe] = wrong
    with pytest.raises(AssertionError):
        check_probes(docs)


def test_check_probes_catches_a_missing_callbacks_port(helm: str) -> None:
    docs = render(helm, *plain())
    c = container(docs)
    c["ports"] = [p for p in c["ports"] if p["name"] != "callbacks"]
    with pytest.raises(AssertionError):
        check_probes(docs)


def test_secrets_are_mounted_as_files_and_appear_nowhere_else(helm: str) -> None:
    docs = render(helm, *plain(*SECRET_VALUES))
    check_secrets_as_files(docs, list(SENTINELS.values()))
    secret = find(docs, "Secret")
    assert set(secret["data"]) == set(SENTINELS)
    spec = pod_spec(docs)
    mounted = [v for v in spec["volumes"] if "projected" in v]
    assert mounted[0]["projected"]["sources"] == [{"secret": {"name": secret["metadata"]["name"]}}]
    assert config_data(docs)["AVATAR_GATEWAY_SECRETS_DIR"] == chart_values()["secretsDir"]
    # The chart-made Secret rolls the pods too.
    annotations = find(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" in annotations


def test_check_secrets_catches_a_secret_in_the_configmap(helm: str) -> None:
    leaked = SENTINELS["AVATAR_GATEWAY_TENCENT__ACCESS_TOKEN"]
    docs = render(helm, *plain(*SECRET_VALUES, f"config.AVATAR_GATEWAY_TENCENT__APPKEY={leaked}"))
    with pytest.raises(AssertionError, match="holds secret values"):
        check_secrets_as_files(docs, list(SENTINELS.values()))


def test_production_secrets_come_from_existing_secrets(helm: str) -> None:
    docs = render(helm, "-f", str(PROD_VALUES))
    assert "Secret" not in kinds(docs)
    check_secrets_as_files(docs, list(SENTINELS.values()))
    prod_values = yaml.safe_load(PROD_VALUES.read_text())
    volume = next(v for v in pod_spec(docs)["volumes"] if "projected" in v)
    assert volume["projected"]["sources"] == [
        {"secret": {"name": prod_values["existingSecret"]}},
        {
            "secret": {
                "name": prod_values["redis"]["existingSecret"],
                "items": [
                    {
                        "key": prod_values["redis"]["existingSecretKey"],
                        "path": "AVATAR_GATEWAY_REDIS_URL",
                    }
                ],
            }
        },
    ]
    assert "AVATAR_GATEWAY_REDIS_URL" not in config_data(docs)


def test_redis_url_in_the_main_secret_is_not_projected_twice(helm: str) -> None:
    docs = render(
        helm,
        *prod(
            "redis.existingSecret=avatar-gateway-vendors",
            "redis.existingSecretKey=AVATAR_GATEWAY_REDIS_URL",
        ),
    )
    volume = next(v for v in pod_spec(docs)["volumes"] if "projected" in v)
    assert volume["projected"]["sources"] == [{"secret": {"name": "avatar-gateway-vendors"}}]


def test_secret_settings_are_refused_in_config(helm: str) -> None:
    for name in ("AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET", "AVATAR_GATEWAY_AKOOL__API_KEY"):
        err = render_fails(helm, *plain(f"config.{name}=x"))
        assert name in err
    # A non-secret one is fine, and lands in the ConfigMap; so do the JWT settings.
    docs = render(
        helm,
        *plain(
            "config.AVATAR_GATEWAY_AKOOL__LIVEKIT_API_KEY=key",
            "config.AVATAR_GATEWAY_JWT_JWKS=https://idp.example.com/jwks.json",
            "config.AVATAR_GATEWAY_JWT_ISSUER=https://idp.example.com/",
            "config.AVATAR_GATEWAY_JWT_AUDIENCE=avatar-gateway",
        ),
    )
    data = config_data(docs)
    assert data["AVATAR_GATEWAY_AKOOL__LIVEKIT_API_KEY"] == "key"
    assert data["AVATAR_GATEWAY_JWT_JWKS"] == "https://idp.example.com/jwks.json"
    assert data["AVATAR_GATEWAY_JWT_AUDIENCE"] == "avatar-gateway"


def test_opentelemetry_variables_pass_through_config(helm: str) -> None:
    """Tracing is configured by the standard OTEL_* variables (docs/architecture.md §7): the
    ConfigMap carries them; OTLP headers, which may hold a collector's token, are refused
    (they belong in the Secret)."""
    docs = render(
        helm,
        *plain(
            "config.OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector.observability:4318",
            "config.OTEL_TRACES_SAMPLER=parentbased_traceidratio",
        ),
    )
    data = config_data(docs)
    assert data["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
    assert data["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    for name in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
        err = render_fails(helm, *plain(f"config.{name}=authorization=Bearer x"))
        assert name in err, err
    assert "OTELX_Y" in render_fails(helm, *plain("config.OTELX_Y=1"))  # not a standard name


@pytest.mark.parametrize("name", CHART_OWNED)
def test_variables_the_chart_sets_are_refused_in_config(helm: str, name: str) -> None:
    err = render_fails(helm, *plain(f"config.{name}=x"))
    assert name in err and "schema" in err, err


def test_redis_url_with_a_password_is_refused(helm: str) -> None:
    err = render_fails(helm, *plain("redis.url=redis://:hunter2@redis:6379/0"))
    assert "carries credentials" in err
    docs = render(helm, *plain("redis.url=redis://redis.redis.svc:6379/0"))
    assert config_data(docs)["AVATAR_GATEWAY_REDIS_URL"] == "redis://redis.redis.svc:6379/0"


def test_services_headless_for_client_side_balancing(helm: str) -> None:
    docs = render(helm, *plain())
    headless = find(docs, "Service", f"{RELEASE}-avatar-gateway-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert [p["port"] for p in headless["spec"]["ports"]] == [GRPC_PORT]
    main = find(docs, "Service", f"{RELEASE}-avatar-gateway")
    ports = {p["name"]: p for p in main["spec"]["ports"]}
    assert {name: (p["port"], p["targetPort"]) for name, p in ports.items()} == {
        "grpc": (GRPC_PORT, "grpc"),
        "callbacks": (CALLBACKS_PORT, "callbacks"),
        "ops": (OPS_PORT, "ops"),
    }
    # Plaintext gRPC: HTTP/2 with prior knowledge, on both Services.
    assert ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
    assert headless["spec"]["ports"][0]["appProtocol"] == "kubernetes.io/h2c"
    sa = find(docs, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False


def render_notes(helm: str, tmp_path: Path, *args: str) -> str:
    """NOTES.txt as ``helm install`` would print it (helm template does not render it): the
    notes are moved out of templates/ in a copy of the chart and rendered through tpl."""
    chart = tmp_path / "chart"
    if not chart.exists():
        shutil.copytree(CHART, chart)
        # .Files does not see templates/: move the notes out and render them through tpl.
        (chart / "templates" / "NOTES.txt").rename(chart / "notes-source.txt")
        (chart / "templates" / "notes-probe.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
            'data:\n  notes: {{ tpl (.Files.Get "notes-source.txt") . | toJson }}\n'
        )
    proc = run_helm(helm, "template", RELEASE, str(chart), "-n", NAMESPACE, *args)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    notes: str = find(docs, "ConfigMap", "notes")["data"]["notes"]
    return notes


@pytest.mark.parametrize(
    ("values", "channel"),
    [
        (plain(), "grpc.aio.insecure_channel(target"),
        (tls(), "grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(ca)"),
        (["-f", str(PROD_VALUES)], "grpc.ssl_channel_credentials(ca, key, cert)"),
    ],
    ids=["plaintext", "tls", "mtls"],
)
def test_notes_tell_clients_to_use_the_headless_service(
    helm: str, tmp_path: Path, values: list[str], channel: str
) -> None:
    notes = render_notes(helm, tmp_path, *values)
    target = f"dns:///{RELEASE}-avatar-gateway-headless.{NAMESPACE}.svc.cluster.local:{GRPC_PORT}"
    assert target in notes
    for option in (
        "grpc.WithDefaultServiceConfig",
        'defaultLoadBalancingPolicy("round_robin")',
        "'grpc.service_config'",
        '("grpc.lb_policy_name", "round_robin")',
        channel,
    ):
        assert option in notes, option
    # The three ports, each with what it serves.
    assert f"{GRPC_PORT}  gRPC API" in notes
    assert f"{CALLBACKS_PORT}   public callbacks listener" in notes
    assert f"{OPS_PORT}   internal ops listener" in notes


def test_notes_warn_loudly_without_authentication(helm: str, tmp_path: Path) -> None:
    warning = "WARNING: NO AUTHENTICATION ON THE gRPC API"
    # Production mode, no API keys, no JWT: renders, and warns.
    assert warning in render_notes(helm, tmp_path, *plain())
    assert warning in render_notes(helm, tmp_path, *tls("tls.clientCA.secretName=gw-ca"))
    # API keys or a JWKS: no warning.
    keys = render_notes(helm, tmp_path, *tls("auth.apiKeys.secretName=gw-api-keys"))
    assert warning not in keys and "gw-api-keys" in keys and "revoke" in keys
    jwt = render_notes(helm, tmp_path, *tls("config.AVATAR_GATEWAY_JWT_JWKS=https://idp/jwks"))
    assert warning not in jwt
    assert warning not in render_notes(helm, tmp_path, "-f", str(PROD_VALUES))
    # The sandbox (emulated vendors, nothing billed) gets a note, not the warning.
    sandbox = render_notes(helm, tmp_path, *sets("config.AVATAR_GATEWAY_SANDBOX=true"))
    assert warning not in sandbox and "no authentication (sandbox mode)" in sandbox


def test_notes_explain_tls_rotation_or_plaintext(helm: str, tmp_path: Path) -> None:
    mtls = render_notes(helm, tmp_path, "-f", str(PROD_VALUES))
    assert "avatar-gateway-grpc-tls" in mtls and "No restart" in mtls
    assert "Mutual TLS: every client must present a certificate" in mtls
    assert "PLAINTEXT" not in mtls
    plaintext = render_notes(helm, tmp_path, *plain())
    assert "PLAINTEXT gRPC (grpcPlaintext=true)" in plaintext and "Rotation" not in plaintext


def test_production_has_pdb_hpa_networkpolicy_and_spread(helm: str) -> None:
    docs = render(helm, "-f", str(PROD_VALUES))
    pdb = find(docs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["maxUnavailable"] == 1
    hpa = find(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["minReplicas"] >= 3
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    deployment = find(docs, "Deployment")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    keys = {t["topologyKey"] for t in pod_spec(docs)["topologySpreadConstraints"]}
    assert "kubernetes.io/hostname" in keys

    policy = find(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]

    def ports_allowed_to(namespace: str) -> set[str]:
        peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
        return {
            p["port"] for rule in policy["ingress"] if peer in rule.get("from", [])
            for p in rule["ports"]
        }  # fmt: skip

    # The ingress controller (vendor callbacks) reaches the callbacks listener only, never ops;
    # Prometheus reaches the ops port (/metrics) only.
    assert ports_allowed_to("ingress-nginx") == {"callbacks"}
    assert ports_allowed_to("monitoring") == {"ops"}
    ingress_ports = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert ingress_ports == {"grpc", "callbacks", "ops"}
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    # DNS (both protocols), Redis, vendor HTTPS, LiveKit: a default-deny must not cut them.
    assert {(53, "UDP"), (53, "TCP"), (6379, "TCP"), (443, "TCP"), (7880, "TCP")} <= egress_ports


def test_default_values_have_no_hpa_or_networkpolicy(helm: str) -> None:
    docs = render(helm, *plain())
    assert not kinds(docs) & {"HorizontalPodAutoscaler", "NetworkPolicy", "Ingress", "Secret"}
    assert find(docs, "Deployment")["spec"]["replicas"] == 1
    assert "PodDisruptionBudget" in kinds(docs)
    assert "AVATAR_GATEWAY_SECRETS_DIR" not in config_data(docs)  # nothing mounted


@pytest.mark.parametrize(
    "override", ["replicaCount=3", "autoscaling.enabled=true"], ids=["replicas", "hpa"]
)
def test_several_replicas_without_redis_fail_to_render(helm: str, override: str) -> None:
    err = render_fails(helm, *plain(override))
    assert "needs a shared Redis" in err
    docs = render(helm, *plain(override, "redis.url=redis://redis:6379/0"))
    assert "Deployment" in kinds(docs)


def test_workers_are_passed_sized_and_need_redis(helm: str) -> None:
    assert "AVATAR_GATEWAY_WORKERS" not in config_data(render(helm, *plain()))  # the CPUs
    err = render_fails(helm, *plain("workers=2"))
    assert "workers=2 needs a shared Redis" in err, err
    pairs = ("workers=4", "redis.url=redis://redis:6379/0")
    docs = render(helm, *plain(*pairs))
    assert config_data(docs)["AVATAR_GATEWAY_WORKERS"] == "4"
    values = chart_values()
    values["workers"] = 4
    check_resources(docs, values)  # memory: 4 idle heaps
    assert "workers" in render_fails(helm, *plain("workers=0", "redis.url=redis://r:6379/0"))


def test_config_change_changes_the_checksum(helm: str) -> None:
    def checksum(*pairs: str) -> str:
        deployment = find(render(helm, *plain(*pairs)), "Deployment")
        value: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return value

    base = checksum("replicaCount=1")
    assert checksum("replicaCount=1") == base  # deterministic
    assert checksum("config.AVATAR_GATEWAY_LOG_LEVEL=debug") != base
    assert checksum("publicUrl=https://gw.example.com") != base
    assert checksum("replicaCount=1", "podLabels.team=avatars") == base  # not a config change


def test_ingress_routes_only_callbacks(helm: str) -> None:
    docs = render(helm, "-f", str(PROD_VALUES))
    paths = find(docs, "Ingress")["spec"]["rules"][0]["http"]["paths"]
    # The public callbacks listener, never the ops port (/metrics, /healthz, /livez).
    assert [(p["path"], p["backend"]["service"]["port"]["name"]) for p in paths] == [
        ("/callbacks/", "callbacks")
    ]
    service = find(docs, "Service", f"{RELEASE}-avatar-gateway")
    by_name = {p["name"]: p for p in service["spec"]["ports"]}
    assert by_name["callbacks"]["port"] == CALLBACKS_PORT


def test_numbers_from_a_values_file_are_rendered_as_the_gateway_reads_them(
    helm: str, tmp_path: Path
) -> None:
    """helm reads numbers of values files as floats: 1234567890 must not become 1.23456789e+09."""
    values = tmp_path / "values.yaml"
    values.write_text(
        "config:\n"
        "  AVATAR_GATEWAY_ZEGOCLOUD__APP_ID: 1234567890\n"
        "  AVATAR_GATEWAY_REAPER_INTERVAL_S: 2.5\n"
        "shutdown:\n"
        "  graceSeconds: 12.5\n"
        "grpcPlaintext: true\n"
    )
    docs = render(helm, "-f", str(values))
    data = config_data(docs)
    assert data["AVATAR_GATEWAY_ZEGOCLOUD__APP_ID"] == "1234567890"
    assert data["AVATAR_GATEWAY_REAPER_INTERVAL_S"] == "2.5"
    assert data["AVATAR_GATEWAY_SHUTDOWN_GRACE_S"] == "12.5"
    check_drain(docs)
    assert pod_spec(docs)["terminationGracePeriodSeconds"] == 5 + 13 + 30 + 10


# ---------------------------------------------------------------- transport and authentication


def test_rendering_fails_unless_the_grpc_transport_is_chosen(helm: str) -> None:
    # Neither TLS nor plaintext: the gateway would refuse to start; the chart refuses first.
    err = render_fails(helm)
    assert "choose the gRPC transport" in err and "tls.secretName" in err, err
    assert "grpcPlaintext=true" in err
    # Both: contradictory (the gateway refuses AVATAR_GATEWAY_PLAINTEXT with TLS files too),
    # also in sandbox mode.
    both = ("tls.secretName=gw-tls", "grpcPlaintext=true")
    assert "not both" in render_fails(helm, *sets(*both))
    assert "not both" in render_fails(helm, *sets(*both, "config.AVATAR_GATEWAY_SANDBOX=true"))
    # Mutual TLS needs the server's own certificate.
    err = render_fails(helm, *plain("tls.clientCA.secretName=gw-ca"))
    assert "tls.clientCA.secretName" in err and "needs tls.secretName" in err


@pytest.mark.parametrize("sandbox", ["false", "no", "0", ""])
def test_production_mode_needs_a_transport_whatever_sandbox_says(helm: str, sandbox: str) -> None:
    assert "choose the gRPC transport" in render_fails(
        helm, *sets(f"config.AVATAR_GATEWAY_SANDBOX={sandbox}")
    )


@pytest.mark.parametrize("sandbox", ["true", "True", "1", "yes"])
def test_sandbox_may_run_plaintext_without_choosing(helm: str, sandbox: str) -> None:
    """The gateway's sandbox may serve plaintext without AVATAR_GATEWAY_PLAINTEXT (it reads a
    boolean the pydantic way: true/1/yes/on...)."""
    docs = render(helm, *sets(f"config.AVATAR_GATEWAY_SANDBOX={sandbox}"))
    data = config_data(docs)
    assert not {k for k in data if k.startswith("AVATAR_GATEWAY_TLS_")}, data
    assert "AVATAR_GATEWAY_PLAINTEXT" not in data
    grpc = next(p for p in find(docs, "Service", f"{RELEASE}-avatar-gateway")["spec"]["ports"]
                if p["name"] == "grpc")  # fmt: skip
    assert grpc["appProtocol"] == "kubernetes.io/h2c"
    check_probes(docs)


def test_plaintext_is_set_explicitly_and_only_then(helm: str) -> None:
    data = config_data(render(helm, *plain()))
    assert data["AVATAR_GATEWAY_PLAINTEXT"] == "true"
    assert not {k for k in data if k.startswith("AVATAR_GATEWAY_TLS_")}, data
    assert "AVATAR_GATEWAY_PLAINTEXT" not in config_data(render(helm, *tls()))
    assert "AVATAR_GATEWAY_PLAINTEXT" not in config_data(render(helm, "-f", str(PROD_VALUES)))


def test_tls_secret_is_a_whole_secret_volume_named_by_the_tls_variables(helm: str) -> None:
    docs = render(helm, *tls())
    data = config_data(docs)
    assert data["AVATAR_GATEWAY_TLS_CERT_FILE"] == f"{TLS_DIR}/tls.crt"
    assert data["AVATAR_GATEWAY_TLS_KEY_FILE"] == f"{TLS_DIR}/tls.key"
    assert mounted_file(docs, data["AVATAR_GATEWAY_TLS_CERT_FILE"]) == ("gw-tls", "tls.crt")
    assert mounted_file(docs, data["AVATAR_GATEWAY_TLS_KEY_FILE"]) == ("gw-tls", "tls.key")
    assert "AVATAR_GATEWAY_TLS_CLIENT_CA_FILE" not in data  # server-side TLS only
    check_mounts_update_in_place(docs)
    # With TLS the gRPC port carries no h2c (cleartext) appProtocol, on neither Service.
    for name in (f"{RELEASE}-avatar-gateway", f"{RELEASE}-avatar-gateway-headless"):
        grpc = next(p for p in find(docs, "Service", name)["spec"]["ports"] if p["name"] == "grpc")
        assert "appProtocol" not in grpc, grpc
    # Rotation needs no restart: no checksum of the TLS Secret on the pod template.
    annotations = find(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert not [k for k in annotations if "tls" in k], annotations


def test_mutual_tls_client_ca_from_a_secret_key(helm: str) -> None:
    docs = render(helm, *tls("tls.clientCA.secretName=clients-ca", "tls.clientCA.key=bundle.pem"))
    data = config_data(docs)
    assert data["AVATAR_GATEWAY_TLS_CLIENT_CA_FILE"] == f"{CLIENT_CA_DIR}/ca.crt"
    assert mounted_file(docs, data["AVATAR_GATEWAY_TLS_CLIENT_CA_FILE"]) == (
        "clients-ca",
        "bundle.pem",
    )
    check_mounts_update_in_place(docs)
    # The default key is ca.crt, and the CA may live in the TLS Secret itself (cert-manager).
    docs = render(helm, *tls("tls.clientCA.secretName=gw-tls"))
    ca_file = config_data(docs)["AVATAR_GATEWAY_TLS_CLIENT_CA_FILE"]
    assert mounted_file(docs, ca_file) == ("gw-tls", "ca.crt")
    check_mounts_update_in_place(docs)


def test_api_keys_file_from_a_secret_volume(helm: str) -> None:
    docs = render(helm, *tls("auth.apiKeys.secretName=gw-api-keys"))
    path = config_data(docs)["AVATAR_GATEWAY_API_KEYS_FILE"]
    assert path == f"{API_KEYS_DIR}/api-keys"
    assert mounted_file(docs, path) == ("gw-api-keys", "api-keys")
    check_mounts_update_in_place(docs)
    docs = render(helm, *plain("auth.apiKeys.secretName=keys", "auth.apiKeys.key=tenants.txt"))
    path = config_data(docs)["AVATAR_GATEWAY_API_KEYS_FILE"]
    assert mounted_file(docs, path) == ("keys", "tenants.txt")
    # Without the value no file is named (the gateway then runs without API keys).
    assert "AVATAR_GATEWAY_API_KEYS_FILE" not in config_data(render(helm, *plain()))


def test_checks_catch_a_subpath_or_nested_mount(helm: str) -> None:
    docs = render(helm, *tls("auth.apiKeys.secretName=keys", *SECRET_VALUES))
    check_mounts_update_in_place(docs)
    mounts = container(docs)["volumeMounts"]
    tls_mount = next(m for m in mounts if m["mountPath"] == TLS_DIR)
    tls_mount["subPath"] = "tls.crt"
    with pytest.raises(AssertionError):
        check_mounts_update_in_place(docs)
    with pytest.raises(AssertionError):
        mounted_file(docs, f"{TLS_DIR}/tls.crt")
    del tls_mount["subPath"]
    tls_mount["mountPath"] = f"{chart_values()['secretsDir']}/tls"  # inside the secrets volume
    with pytest.raises(AssertionError, match="mounted inside"):
        check_mounts_update_in_place(docs)


def test_secrets_dir_may_not_nest_with_the_chart_mounts(helm: str) -> None:
    err = render_fails(helm, *tls(*SECRET_VALUES, "secretsDir=/var/run/secrets"))
    assert "nest" in err and TLS_DIR in err
    err = render_fails(
        helm, *tls("auth.apiKeys.secretName=k", *SECRET_VALUES, f"secretsDir={API_KEYS_DIR}/x")
    )
    assert "nest" in err and API_KEYS_DIR in err
    # The default secretsDir sits beside them.
    check_mounts_update_in_place(
        render(helm, *tls("tls.clientCA.secretName=c", "auth.apiKeys.secretName=k", *SECRET_VALUES))
    )


def test_production_values_serve_mutual_tls_with_api_keys(helm: str) -> None:
    docs = render(helm, "-f", str(PROD_VALUES))
    prod_values = yaml.safe_load(PROD_VALUES.read_text())
    data = config_data(docs)
    assert mounted_file(docs, data["AVATAR_GATEWAY_TLS_CERT_FILE"]) == (
        prod_values["tls"]["secretName"],
        "tls.crt",
    )
    assert mounted_file(docs, data["AVATAR_GATEWAY_TLS_CLIENT_CA_FILE"]) == (
        prod_values["tls"]["clientCA"]["secretName"],
        prod_values["tls"]["clientCA"]["key"],
    )
    assert mounted_file(docs, data["AVATAR_GATEWAY_API_KEYS_FILE"]) == (
        prod_values["auth"]["apiKeys"]["secretName"],
        "api-keys",
    )
    assert data["AVATAR_GATEWAY_PUBLIC_URL"] == prod_values["publicUrl"]
    check_mounts_update_in_place(docs)
