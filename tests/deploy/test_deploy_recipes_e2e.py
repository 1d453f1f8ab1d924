"""The Istio and Higress EnvoyFilters, applied to a real Envoy 1.40 in front of the real processor.

Istio merges an EnvoyFilter's patches into the gateway's generated config; here they are applied the same
way (HTTP_FILTER INSERT_BEFORE the named filter, in patch order; CLUSTER ADD) to a minimal gateway
listener (one route `llm` to the mock LLM, Higress' access-log format), and a call goes through. The
processor runs with the `processor` Deployment's arguments and the recipe's ConfigMap. Changed for a local
run: addresses (127.0.0.1, free ports; the gateway_stats cluster's Service DNS name becomes 127.0.0.1) and
the config path; the patch values themselves are loaded untouched.
"""

from __future__ import annotations

import copy
import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploykit import get, kustomize, metric, post, procs, wait_for

# Higress' access log line, plus the field the side-by-side guide adds for our line (docs/deploy-higress.md)
LOG_FORMAT = (
    '{"ai_log":"%FILTER_STATE(wasm.ai_log:PLAIN)%",'
    '"gateway_stats_ai_log":"%DYNAMIC_METADATA(gateway_stats:ai_log)%"}\n'
)


def gateway_bootstrap(listen: int, admin: int, upstream: int, log: Path) -> dict[str, Any]:
    """What an Istio / Higress gateway has before the EnvoyFilters: a listener, a route, the router."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
        "HttpConnectionManager",
        "stat_prefix": "gateway",
        "access_log": [
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": str(log),
                    "log_format": {"text_format_source": {"inline_string": LOG_FORMAT}},
                },
            }
        ],
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "llm",
                    "domains": ["*"],
                    "routes": [
                        {"name": "llm", "match": {"prefix": "/"}, "route": {"cluster": "llm_upstream"}}
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "gateway",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                    "filter_chains": [
                        {
                            "filters": [
                                {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "llm_upstream",
                    "type": "STATIC",
                    "connect_timeout": "2s",
                    "load_assignment": {
                        "cluster_name": "llm_upstream",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": upstream,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


def apply_envoyfilters(boot: dict[str, Any], filters: list[dict[str, Any]], processor_port: int) -> None:
    """Istio's semantics for the patches we use, EnvoyFilters in priority order."""
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    chain = hcm["http_filters"]
    for ef in sorted(filters, key=lambda e: e["spec"].get("priority", 0)):
        for p in ef["spec"]["configPatches"]:
            value = copy.deepcopy(p["patch"]["value"])
            assert p["match"]["context"] == "GATEWAY"
            if p["applyTo"] == "HTTP_FILTER":
                assert p["patch"]["operation"] == "INSERT_BEFORE"
                anchor = p["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"]
                names = [f["name"] for f in chain]
                assert anchor in names, (anchor, names)  # Istio would skip the patch silently
                chain.insert(names.index(anchor), value)
            elif p["applyTo"] == "CLUSTER":
                assert p["patch"]["operation"] == "ADD"
                ep = value["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                assert ep["socket_address"]["address"].endswith(".svc.cluster.local")
                ep["socket_address"] = {"address": "127.0.0.1", "port_value": processor_port}
                boot["static_resources"]["clusters"].append(value)
            else:
                raise AssertionError(f"unexpected patch {p['applyTo']}")


class Processor:
    def __init__(self, workdir: Path, args: list[str], config_text: str) -> None:
        self.workdir = workdir
        self.grpc, self.metrics = procs.free_port(), procs.free_port()
        cfg = workdir / "config.yaml"
        cfg.write_text(config_text)
        out = list(args)
        for flag, value in (
            ("--config", str(cfg)),
            ("--grpc-address", f"127.0.0.1:{self.grpc}"),
            ("--metrics-address", f"127.0.0.1:{self.metrics}"),
        ):
            out[out.index(flag) + 1] = value
        self.proc = procs._spawn(
            "gateway-stats", [sys.executable, "-m", "gateway_stats", "serve", *out], workdir
        )
        procs.wait_http(f"http://127.0.0.1:{self.metrics}/readyz", proc=self.proc.popen)

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=5) as r:
            return r.read().decode()


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    work = tmp_path_factory.mktemp("mock")
    port = procs.free_port()
    p = procs._spawn(
        "mockllm",
        [sys.executable, "-m", "gateway_stats.testing.mockllm", "--listen", f"127.0.0.1:{port}"],
        work,
    )
    try:
        procs.wait_http(f"http://127.0.0.1:{port}/healthz", proc=p.popen)
        yield port
    finally:
        p.stop()


def _start(
    objs: list[dict[str, Any]], work: Path, mock: int, lua: bool
) -> tuple[Processor, procs.Proc, int, int, Path]:
    """The processor as its Deployment says, and an Envoy with the recipe's EnvoyFilters applied."""
    (dep,) = [d for d in objs if d["kind"] == "Deployment"]
    (gs,) = dep["spec"]["template"]["spec"]["containers"]
    (cm,) = [c for c in objs if c["kind"] == "ConfigMap" and c["metadata"]["name"] == "gateway-stats-config"]
    work.mkdir(parents=True)
    processor = Processor(work, gs["args"], cm["data"]["config.yaml"])
    try:
        listen, admin = procs.free_port(), procs.free_port()
        log = work / "access.log"
        boot = gateway_bootstrap(listen, admin, mock, log)
        apply_envoyfilters(boot, [o for o in objs if o["kind"] == "EnvoyFilter"], processor.grpc)
        hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        names = [f["name"] for f in hcm["http_filters"]]
        assert names == [*(["envoy.filters.http.lua"] if lua else []), "envoy.filters.http.ext_proc",
                         "envoy.filters.http.router"]  # fmt: skip
        cfg = work / "envoy.yaml"
        cfg.write_text(yaml.safe_dump(boot, sort_keys=False))
        envoy = procs._spawn(
            "envoy",
            [procs.envoy_binary(), "-c", str(cfg), "--concurrency", "1", "--disable-hot-restart",
             "--file-flush-interval-msec", "100", "--log-level", "warn"],
            work,
        )  # fmt: skip
        try:
            procs.wait_http(f"http://127.0.0.1:{admin}/ready", timeout=30, proc=envoy.popen)
        except Exception:
            envoy.stop()
            print(f"--- envoy ---\n{envoy.log_text()[-3000:]}")
            raise
    except Exception:
        processor.proc.stop()
        raise
    return processor, envoy, listen, admin, log


@pytest.mark.parametrize(
    ("recipe", "ai_log_field"),
    [
        ("istio", "ai_log"),  # Lua copy: Higress' own line format carries our ai_log
        ("higress", "gateway_stats_ai_log"),  # side by side: wasm.ai_log stays the plugin's
        ("higress-cutover", "ai_log"),  # the plugin removed, our copy fills wasm.ai_log
    ],
)
def test_recipe_envoyfilters_observe_a_call(
    recipe: str, ai_log_field: str, mock: int, tmp_path: Path
) -> None:
    objs = kustomize(recipe)
    for attempt in range(1, 4):  # a free port taken before our process bound it: again, on fresh ports
        try:
            processor, envoy, listen, admin, log = _start(
                objs, tmp_path / f"try{attempt}", mock, lua=ai_log_field == "ai_log"
            )
            break
        except (TimeoutError, RuntimeError) as exc:
            if attempt == 3:
                raise
            print(f"start failed (attempt {attempt}: {exc}); retrying on fresh ports")
    try:
        body = {"model": "qwen-max", "messages": [{"role": "user", "content": "hello there"}]}
        status, _, raw = post(listen, body, {"x-mock-chat-id": f"{recipe}-1", "x-mse-consumer": "alice"})
        assert status == 200
        sent = json.loads(raw)

        def line() -> dict[str, Any] | None:
            for ln in procs.complete_lines(log):
                d = json.loads(ln)
                if d[ai_log_field] not in ("", "-"):
                    return d
            return None

        d = wait_for(line, 10, f"{recipe}: {ai_log_field} in the access log")
        got = json.loads(d[ai_log_field])
        assert (got["chat_id"], got["model"], got["input_token"], got["output_token"]) == (
            f"{recipe}-1",
            sent["model"],
            sent["usage"]["prompt_tokens"],
            sent["usage"]["completion_tokens"],
        )
        if recipe == "higress":
            assert d["ai_log"] == "-"  # no plugin here; in Higress its line stays in that field
        if recipe.startswith("higress"):
            assert got["consumer"] == "alice"  # the WasmPlugin's own attribute, read from the ConfigMap
        labels = {
            "ai_route": "llm",
            "ai_cluster": "llm_upstream",
            "ai_model": sent["model"],
            "ai_consumer": "alice",
        }
        wait_for(
            lambda: (
                metric(processor.metrics_text(), "route_upstream_model_consumer_metric_input_token", **labels)
                == sent["usage"]["prompt_tokens"]
            ),
            10,
            "the Higress series in the processor's metrics",
        )
        stats = get(f"http://127.0.0.1:{admin}/stats/prometheus")[1]
        assert metric(stats, "envoy_http_ext_proc_streams_started") == 1
        assert metric(stats, "envoy_http_ext_proc_failure_mode_allowed") == 0
    finally:
        envoy.stop()
        processor.proc.stop()
