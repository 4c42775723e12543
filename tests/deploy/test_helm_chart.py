"""The Helm chart deploy/helm/avatar-gateway, checked offline (no cluster, no network).

helm is built from its Go module (tools/build_helm.sh, pinned); the chart must pass
`helm lint --strict`, render with the default and the production-like values, and every
rendered object must pass `kubernetes-validate --strict` against the schemas of the oldest
Kubernetes the chart supports (1.27) and the newest one kubernetes-validate knows. Then the
rendered objects are checked for what the chart promises: gRPC probes, a termination grace
period that covers the drain, the security context, secrets mounted as files and nowhere else,
the headless Service, PDB/HPA, the Redis requirement of several replicas, the config checksum.
Each check is also run against a deliberately wrong rendering, to show it can fail.
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
OPS_PORT = 8081
OLDEST_KUBERNETES = "1.27.0"

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


def check_grpc_probes(docs: Docs) -> None:
    c = container(docs)
    for probe in ("startupProbe", "readinessProbe"):
        assert c[probe].get("grpc", {}).get("port") == GRPC_PORT, f"{probe}: {c[probe]}"
        assert c[probe]["grpc"].get("service", "") == "", "health of the whole server (service '')"
    # Liveness must not be gRPC health, which is NOT_SERVING on purpose while draining.
    liveness = c["livenessProbe"]
    assert "grpc" not in liveness, liveness
    assert liveness["httpGet"]["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": GRPC_PORT, "ops": OPS_PORT}
    assert liveness["httpGet"]["port"] in ("ops", OPS_PORT)


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
    kib = c["idleMemoryMiB"] * 1024 + c["streamsPerPod"] * c["memoryKiBPerStream"]
    mem_mib = -(-kib * headroom // (1024 * 100))
    limit_mib = -(-mem_mib * c["memoryLimitPercent"] // 100)
    resources = container(docs)["resources"]
    assert resources["requests"] == {"cpu": f"{cpu_m}m", "memory": f"{mem_mib}Mi"}
    assert resources["limits"] == {"memory": f"{limit_mib}Mi"}


# ---------------------------------------------------------------- lint and schema validation


@pytest.mark.parametrize("values", [[], ["-f", str(PROD_VALUES)]], ids=["default", "production"])
def test_helm_lint_strict(helm: str, values: list[str]) -> None:
    proc = run_helm(helm, "lint", "--strict", str(CHART), *values)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_chart_supports_the_oldest_validated_kubernetes(helm: str) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == ">=1.27.0-0"  # native gRPC probes are GA in 1.27
    assert chart["appVersion"] == "0.1.0"
    assert "incompatible" in render_fails(helm, "--kube-version", "1.26.0")


RENDERINGS = {
    "default": [],
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
    text = render_text(helm, "--set-json", 'podSecurityContext={"runAsNonRoot":true,"runAsUsr":1}')
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


@pytest.mark.parametrize("values", [[], ["-f", str(PROD_VALUES)]], ids=["default", "production"])
def test_probes_drain_security_resources(helm: str, values: list[str]) -> None:
    docs = render(helm, *values)
    check_grpc_probes(docs)
    check_drain(docs)
    check_security(docs)
    check_resources(docs, chart_values())
    data = config_data(docs)
    assert data["AVATAR_GATEWAY_LISTEN"] == f"0.0.0.0:{GRPC_PORT}"
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
    assert pod_spec(render(helm))["terminationGracePeriodSeconds"] == expected
    longer = render(helm, *sets("shutdown.graceSeconds=45", "shutdown.preStopSleepSeconds=10"))
    check_drain(longer)
    assert pod_spec(longer)["terminationGracePeriodSeconds"] == expected + 25 + 5
    err = render_fails(helm, *sets("shutdown.terminationGracePeriodSeconds=30"))
    assert "shorter than the drain needs" in err


def test_check_drain_catches_a_short_grace_period(helm: str) -> None:
    docs = render(helm)
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
        check_security(render(helm, *sets(override)))


def test_check_probes_catches_a_grpc_liveness_probe(helm: str) -> None:
    docs = render(helm)
    container(docs)["livenessProbe"] = {"grpc": {"port": GRPC_PORT}}
    with pytest.raises(AssertionError):
        check_grpc_probes(docs)


def test_secrets_are_mounted_as_files_and_appear_nowhere_else(helm: str) -> None:
    docs = render(helm, *sets(*SECRET_VALUES))
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
    docs = render(helm, *sets(*SECRET_VALUES, f"config.AVATAR_GATEWAY_TENCENT__APPKEY={leaked}"))
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
        err = render_fails(helm, *sets(f"config.{name}=x"))
        assert name in err
    # The chart owns these.
    assert "AVATAR_GATEWAY_SECRETS_DIR" in render_fails(
        helm, *sets("config.AVATAR_GATEWAY_SECRETS_DIR=/x")
    )
    # A non-secret one is fine, and lands in the ConfigMap.
    docs = render(helm, *sets("config.AVATAR_GATEWAY_AKOOL__LIVEKIT_API_KEY=key"))
    assert config_data(docs)["AVATAR_GATEWAY_AKOOL__LIVEKIT_API_KEY"] == "key"


def test_redis_url_with_a_password_is_refused(helm: str) -> None:
    err = render_fails(helm, *sets("redis.url=redis://:hunter2@redis:6379/0"))
    assert "carries credentials" in err
    docs = render(helm, *sets("redis.url=redis://redis.redis.svc:6379/0"))
    assert config_data(docs)["AVATAR_GATEWAY_REDIS_URL"] == "redis://redis.redis.svc:6379/0"


def test_services_headless_for_client_side_balancing(helm: str) -> None:
    docs = render(helm)
    headless = find(docs, "Service", f"{RELEASE}-avatar-gateway-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert [p["port"] for p in headless["spec"]["ports"]] == [GRPC_PORT]
    main = find(docs, "Service", f"{RELEASE}-avatar-gateway")
    ports = {p["name"]: p for p in main["spec"]["ports"]}
    assert ports["grpc"]["port"] == GRPC_PORT and ports["ops"]["port"] == OPS_PORT
    assert ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
    sa = find(docs, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False


def test_notes_tell_clients_to_use_the_headless_service(helm: str, tmp_path: Path) -> None:
    """helm template does not render NOTES.txt: render it through a copy of the chart."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    # .Files does not see templates/: move the notes out and render them through tpl.
    (chart / "templates" / "NOTES.txt").rename(chart / "notes-source.txt")
    (chart / "templates" / "notes-probe.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ tpl (.Files.Get "notes-source.txt") . | toJson }}\n'
    )
    proc = run_helm(helm, "template", RELEASE, str(chart), "-n", NAMESPACE)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    notes = find(docs, "ConfigMap", "notes")["data"]["notes"]
    target = f"dns:///{RELEASE}-avatar-gateway-headless.{NAMESPACE}.svc.cluster.local:{GRPC_PORT}"
    assert target in notes
    for option in (
        "grpc.WithDefaultServiceConfig",
        'defaultLoadBalancingPolicy("round_robin")',
        "'grpc.service_config'",
        '("grpc.lb_policy_name", "round_robin")',
    ):
        assert option in notes


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
    ingress_ports = [p["port"] for rule in policy["ingress"] for p in rule["ports"]]
    assert "grpc" in ingress_ports and "ops" in ingress_ports
    metrics_peers = [peer for rule in policy["ingress"] for peer in rule.get("from", [])]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    } in metrics_peers
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    # DNS (both protocols), Redis, vendor HTTPS, LiveKit: a default-deny must not cut them.
    assert {(53, "UDP"), (53, "TCP"), (6379, "TCP"), (443, "TCP"), (7880, "TCP")} <= egress_ports


def test_default_values_have_no_hpa_or_networkpolicy(helm: str) -> None:
    docs = render(helm)
    assert not kinds(docs) & {"HorizontalPodAutoscaler", "NetworkPolicy", "Ingress", "Secret"}
    assert find(docs, "Deployment")["spec"]["replicas"] == 1
    assert "PodDisruptionBudget" in kinds(docs)
    assert "AVATAR_GATEWAY_SECRETS_DIR" not in config_data(docs)  # nothing mounted


@pytest.mark.parametrize(
    "override", ["replicaCount=3", "autoscaling.enabled=true"], ids=["replicas", "hpa"]
)
def test_several_replicas_without_redis_fail_to_render(helm: str, override: str) -> None:
    err = render_fails(helm, *sets(override))
    assert "needs a shared Redis" in err
    docs = render(helm, *sets(override, "redis.url=redis://redis:6379/0"))
    assert "Deployment" in kinds(docs)


def test_config_change_changes_the_checksum(helm: str) -> None:
    def checksum(*pairs: str) -> str:
        deployment = find(render(helm, *sets(*pairs)), "Deployment")
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
    assert [(p["path"], p["backend"]["service"]["port"]["name"]) for p in paths] == [
        ("/callbacks/", "ops")
    ]


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
    )
    docs = render(helm, "-f", str(values))
    data = config_data(docs)
    assert data["AVATAR_GATEWAY_ZEGOCLOUD__APP_ID"] == "1234567890"
    assert data["AVATAR_GATEWAY_REAPER_INTERVAL_S"] == "2.5"
    assert data["AVATAR_GATEWAY_SHUTDOWN_GRACE_S"] == "12.5"
    check_drain(docs)
    assert pod_spec(docs)["terminationGracePeriodSeconds"] == 5 + 13 + 30 + 10
