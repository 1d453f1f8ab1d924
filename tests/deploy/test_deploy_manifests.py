"""Every Kubernetes manifest in deploy/ validates, and says what the sidecar and the generator say.

Built-in kinds: the Kubernetes 1.30, 1.33 and 1.37 schemas of PyPI `kubernetes-validate`, strict (an
unknown field fails). Custom resources: the CRD schemas vendored in deploy/kubernetes/schemas. Then the
invariants a reviewer would check by hand: the bootstrap is the generator's output, the socket path and
the shutdown timings agree, security contexts, probes, and the recipes' ext_proc settings.
"""

from __future__ import annotations

import copy
import io
import re
import shlex
from contextlib import redirect_stdout
from functools import cache
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from deploykit import DEPLOY, K8S, KUSTOMIZATIONS, kustomize

from gateway_stats.cli import main as cli_main
from gateway_stats.config import load_config
from gateway_stats.envoy.bootstrap import EnvoyOptions, bootstrap

K8S_VERSIONS = ("1.30.0", "1.33.0", "1.37.0")
CRD_SCHEMAS = {
    ("gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy"): "envoyextensionpolicy.yaml",
    ("gateway.envoyproxy.io/v1alpha1", "EnvoyProxy"): "envoyproxy.yaml",
    ("networking.istio.io/v1alpha3", "EnvoyFilter"): "envoyfilter.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.yaml",
}
# The exact `gateway-stats envoy-config` command behind deploy/kubernetes/base/envoy.yaml (also quoted in
# that directory's kustomization.yaml, which this test checks).
BASE_ENVOY_CONFIG_ARGS = [
    "envoy-config",
    "--listen", "0.0.0.0:10000",
    "--upstream", "api.openai.com:443",
    "--upstream-tls",
    "--processor", "unix:/var/run/gateway-stats/ext_proc.sock",
    "--admin", "127.0.0.1:9901",
    "--access-log", "/dev/stdout",
    "--config", "deploy/kubernetes/base/gateway-stats.yaml",
]  # fmt: skip


@cache
def built(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(kustomize(name))


def objects(name: str, kind: str) -> list[dict[str, Any]]:
    return [copy.deepcopy(d) for d in built(name) if d["kind"] == kind]


def one(name: str, kind: str) -> dict[str, Any]:
    (obj,) = objects(name, kind)
    return obj


def containers(name: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in one(name, "Deployment")["spec"]["template"]["spec"]["containers"]}


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    schema = yaml.safe_load((K8S / "schemas" / CRD_SCHEMAS[(api_version, kind)]).read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)  # type: ignore[no-any-return]


def validate(obj: dict[str, Any], k8s_version: str = "1.37.0") -> None:
    """Raise if `obj` is not a valid object of its kind."""
    key = (obj["apiVersion"], obj["kind"])
    if key in CRD_SCHEMAS:
        errors = sorted(crd_validator(*key).iter_errors(obj), key=lambda e: list(e.path))
        if errors:
            raise AssertionError("; ".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:5]))
        return
    kubernetes_validate.validate(obj, k8s_version, strict=True)


# ------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_object_validates(name: str) -> None:
    objs = built(name)
    assert objs, name
    kinds = set()
    for obj in objs:
        kinds.add(obj["kind"])
        for version in K8S_VERSIONS if (obj["apiVersion"], obj["kind"]) not in CRD_SCHEMAS else ("-",):
            try:
                validate(obj, version)
            except Exception as exc:  # kubernetes_validate raises its own error types
                pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']} (k8s {version}): {exc}")
    assert {"Deployment", "ConfigMap", "Service", "PodMonitor"} <= kinds, kinds


def test_prometheus_rule_object_validates() -> None:
    rule = yaml.safe_load((DEPLOY / "prometheus" / "prometheusrule.yaml").read_text())
    validate(rule)
    plain = yaml.safe_load((DEPLOY / "prometheus" / "gateway-stats.rules.yaml").read_text())
    assert rule["spec"]["groups"] == plain["groups"], (
        "prometheusrule.yaml must carry gateway-stats.rules.yaml's groups verbatim"
    )


def _broken(name: str, kind: str, path: str, value: Any) -> dict[str, Any]:
    obj = one(name, kind)
    node: Any = obj
    *parents, last = path.split(".")
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    node[int(last) if last.isdigit() else last] = value
    return obj


@pytest.mark.parametrize(
    ("name", "kind", "path", "value"),
    [
        # a typo in a container field (strict Kubernetes schema)
        ("base", "Deployment", "spec.template.spec.containers.1.readinesProbe", {}),
        # Envoy Gateway allows only some attribute prefixes: not xds.cluster_name
        ("envoy-gateway", "EnvoyExtensionPolicy", "spec.extProc.0.processingMode.request.attributes",
         ["xds.cluster_name"]),
        ("envoy-gateway", "EnvoyExtensionPolicy", "spec.extProc.0.messageTimeout", "0.2s"),
        ("envoy-gateway", "EnvoyProxy", "spec.telemetry.accessLog.settings.0.format.type", "Plain"),
        ("istio", "EnvoyFilter", "spec.configPatches.0.applyTo", "HTTP_FILTERS"),
        ("istio", "EnvoyFilter", "spec.configPatches.0.patch.operation", "INSERT_BEFOR"),
        ("base", "PodMonitor", "spec.podMetricsEndpoints.0.intervall", "15s"),
    ],
)  # fmt: skip
def test_validators_reject_a_broken_copy(name: str, kind: str, path: str, value: Any) -> None:
    obj = _broken(name, kind, path, value)
    with pytest.raises(Exception):  # noqa: B017 - each validator raises its own type
        validate(obj)


def test_prometheus_rule_schema_rejects_a_bad_duration() -> None:
    rule = yaml.safe_load((DEPLOY / "prometheus" / "prometheusrule.yaml").read_text())
    rule["spec"]["groups"][1]["rules"][0]["for"] = "10 minutes"
    with pytest.raises(AssertionError, match="does not match"):
        validate(rule)


# ------------------------------------------------------------------------ the base: one pod, a socket


def test_bootstrap_is_exactly_the_generators_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DEPLOY.parent)
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli_main(BASE_ENVOY_CONFIG_ARGS) == 0
    generated = out.getvalue()
    assert (K8S / "base" / "envoy.yaml").read_text() == generated
    (cm,) = [c for c in objects("base", "ConfigMap") if c["metadata"]["name"].startswith("envoy-bootstrap")]
    assert cm["data"]["envoy.yaml"] == generated
    # the command is documented next to the file, verbatim
    comment = " ".join(
        ln.lstrip("#").strip().rstrip("\\").strip()
        for ln in (K8S / "base" / "kustomization.yaml").read_text().splitlines()
        if ln.startswith("#")
    )
    assert "gateway-stats " + shlex.join(BASE_ENVOY_CONFIG_ARGS) in re.sub(r"\s+", " ", comment)


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_socket_path_is_shared_and_matches_the_bootstrap() -> None:
    c = containers("base")
    grpc = _arg(c["gateway-stats"]["args"], "--grpc-address")
    assert grpc.startswith("unix:")
    sock = grpc.removeprefix("unix:")
    boot = yaml.safe_load((K8S / "base" / "envoy.yaml").read_text())
    (gs,) = [cl for cl in boot["static_resources"]["clusters"] if cl["name"] == "gateway_stats"]
    assert (
        gs["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["pipe"]["path"]
        == sock
    )
    sock_dir = sock.rsplit("/", 1)[0]
    for name in ("envoy", "gateway-stats"):
        mounts = {m["mountPath"]: m["name"] for m in c[name]["volumeMounts"]}
        assert mounts.get(sock_dir) == "sockets", (name, mounts)
    volumes = {v["name"]: v for v in one("base", "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["sockets"]


def test_config_maps_hot_reload_and_rollout() -> None:
    names = {c["metadata"]["name"] for c in objects("base", "ConfigMap")}
    assert "gateway-stats-config" in names  # no hash suffix: edits reach running pods, which reload
    assert any(re.fullmatch(r"envoy-bootstrap-[a-z0-9]{10}", n) for n in names)  # hashed: edits roll pods
    for name in ("base", "processor"):
        dep = one(name, "Deployment")
        volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        gs = containers(name)["gateway-stats"]
        (mount,) = [m for m in gs["volumeMounts"] if m["name"] == "gateway-stats-config"]
        assert "subPath" not in mount  # a subPath mount never sees ConfigMap updates
        assert _arg(gs["args"], "--config") == mount["mountPath"] + "/config.yaml"
        assert volumes["gateway-stats-config"]["configMap"]["name"] == "gateway-stats-config"


@pytest.mark.parametrize("name", ["base", "processor", "envoy-gateway", "istio", "higress"])
def test_the_shipped_config_is_valid(name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (cm,) = [c for c in objects(name, "ConfigMap") if c["metadata"]["name"] == "gateway-stats-config"]
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    load_config(str(path))  # raises ConfigError naming the field


def _seconds(args: list[str], flag: str) -> float:
    return float(_arg(args, flag))


@pytest.mark.parametrize("name", ["base", "processor"])
def test_pod_security_probes_resources_and_drain(name: str) -> None:
    spec = one(name, "Deployment")["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["automountServiceAccountToken"] is False
    grace = spec["terminationGracePeriodSeconds"]
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]), c["name"]
        assert "memory" in c["resources"]["limits"] and "cpu" not in c["resources"]["limits"], c["name"]
        assert c["readinessProbe"] and c["livenessProbe"], c["name"]
    gs = next(c for c in spec["containers"] if c["name"] == "gateway-stats")
    ports = {p["name"]: p["containerPort"] for p in gs["ports"]}
    assert _arg(gs["args"], "--metrics-address") == f"0.0.0.0:{ports['metrics']}"
    assert gs["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert gs["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    # preStop sleep, then SIGTERM and --drain-seconds: all inside the grace period
    gs_stop = gs["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert gs_stop + _seconds(gs["args"], "--drain-seconds") < grace
    envoy = next((c for c in spec["containers"] if c["name"] == "envoy"), None)
    if envoy is not None:
        # gateway-stats outlives Envoy's in-flight calls: its preStop is the longer one
        assert envoy["lifecycle"]["preStop"]["sleep"]["seconds"] < gs_stop
        assert envoy["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "envoy-stats"}
    # every volume a container writes to is an emptyDir (the root filesystem is read-only)
    volumes = {v["name"]: v for v in spec["volumes"]}
    for c in spec["containers"]:
        for m in c["volumeMounts"]:
            assert m.get("readOnly") or "emptyDir" in volumes[m["name"]], (c["name"], m)
    assert "emptyDir" in volumes["records"]


@pytest.mark.parametrize("name", ["base", "processor"])
def test_service_and_podmonitor_point_at_the_pod(name: str) -> None:
    dep = one(name, "Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"] for c in dep["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    svc = one(name, "Service")
    assert svc["spec"]["selector"].items() <= labels.items() and svc["spec"]["selector"]
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports
    pm = one(name, "PodMonitor")
    assert pm["spec"]["selector"]["matchLabels"].items() <= labels.items()
    jobs = {}
    for ep in pm["spec"]["podMetricsEndpoints"]:
        assert ep["port"] in ports
        (relabel,) = [r for r in ep["relabelings"] if r.get("targetLabel") == "job"]
        jobs[ep["path"]] = relabel["replacement"]
    # the job names the alert rules and the dashboard expect
    assert jobs["/metrics"] == "gateway-stats"
    if name == "base":
        assert jobs["/stats/prometheus"] == "gateway-stats-envoy"
    pdb = one(name, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


# ------------------------------------------------------------------------------------- the recipes


def _generated(processor: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(http filters before the router, the gateway_stats cluster) of `gateway-stats envoy-config
    --log-format filter-state`: the Lua copy into `wasm.ai_log`, then ext_proc."""
    boot = bootstrap(EnvoyOptions(processor=processor, log_format="filter-state"))
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    (cluster,) = [c for c in boot["static_resources"]["clusters"] if c["name"] == "gateway_stats"]
    return hcm["http_filters"][:-1], cluster


def test_istio_envoyfilter_is_the_generators_filters_and_cluster() -> None:
    ef = one("istio", "EnvoyFilter")
    (svc,) = [s for s in objects("istio", "Service") if s["metadata"]["name"] == "gateway-stats"]
    host = f"gateway-stats.{svc['metadata']['namespace']}.svc.cluster.local:{svc['spec']['ports'][0]['port']}"
    filters, cluster = _generated(host)
    patches = ef["spec"]["configPatches"]
    assert [p["patch"]["value"] for p in patches if p["applyTo"] == "HTTP_FILTER"] == filters
    assert [p["patch"]["value"] for p in patches if p["applyTo"] == "CLUSTER"] == [cluster]
    assert all(p["patch"]["operation"] == "INSERT_BEFORE" for p in patches if p["applyTo"] == "HTTP_FILTER")
    assert ef["metadata"]["namespace"] == svc["metadata"]["namespace"]


def test_higress_envoyfilters_side_by_side_then_cutover() -> None:
    (svc,) = [s for s in objects("higress", "Service") if s["metadata"]["name"] == "gateway-stats"]
    host = f"gateway-stats.{svc['metadata']['namespace']}.svc.cluster.local:{svc['spec']['ports'][0]['port']}"
    (lua, ext_proc), cluster = _generated(host)
    side = one("higress", "EnvoyFilter")
    values = [p["patch"]["value"] for p in side["spec"]["configPatches"]]
    assert values == [ext_proc, cluster]  # no Lua copy while the plugin owns wasm.ai_log
    cut = {e["metadata"]["name"]: e for e in objects("higress-cutover", "EnvoyFilter")}
    assert cut["gateway-stats"] == side
    (copy_patch,) = cut["gateway-stats-ai-log"]["spec"]["configPatches"]
    assert copy_patch["patch"]["value"] == lua
    assert copy_patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == ext_proc["name"]
    assert cut["gateway-stats-ai-log"]["spec"]["priority"] > side["spec"].get("priority", 0)
    # the sidecar reads the plugin's own WasmPlugin object
    (cm,) = [c for c in objects("higress", "ConfigMap") if c["metadata"]["name"] == "gateway-stats-config"]
    assert yaml.safe_load(cm["data"]["config.yaml"])["kind"] == "WasmPlugin"


def test_envoy_gateway_policy_carries_the_generators_settings() -> None:
    (_, ext_proc), _ = _generated("127.0.0.1:18080")
    want = ext_proc["typed_config"]
    (ep,) = one("envoy-gateway", "EnvoyExtensionPolicy")["spec"]["extProc"]
    assert ep["failOpen"] is want["failure_mode_allow"] is True
    assert ep["messageTimeout"] == f"{float(want['message_timeout'].rstrip('s')) * 1000:g}ms"
    assert ep["metadata"]["writableNamespaces"] == want["metadata_options"]["receiving_namespaces"]["untyped"]
    pm = ep["processingMode"]
    assert pm["allowModeOverride"] is want["allow_mode_override"] is True
    assert pm["request"]["body"] == pm["response"]["body"] == "Streamed"
    assert set(pm["request"]["attributes"]) <= set(want["request_attributes"])
    assert pm["response"]["attributes"] == want["response_attributes"]
    (ref,) = ep["backendRefs"]
    (svc,) = [s for s in objects("envoy-gateway", "Service") if s["metadata"]["name"] == ref["name"]]
    assert ref["port"] == svc["spec"]["ports"][0]["port"]
    proxy = one("envoy-gateway", "EnvoyProxy")
    (setting,) = proxy["spec"]["telemetry"]["accessLog"]["settings"]
    assert setting["format"]["text"] == '{"ai_log":"%DYNAMIC_METADATA(gateway_stats:ai_log)%"}\n'
