"""`gateway-stats envoy-config`: a complete Envoy 1.40 bootstrap with gateway-stats attached.

It embodies what we verified about ext_proc: fail-open, explicit message timeout, mode override,
Content-Length kept, metadata namespace allow-listed, route/cluster/request-id attributes, raised
circuit breakers on the side cluster, and an access log printing Higress's `{"ai_log":"…"}` line.
With a tracing collector, Envoy's OpenTelemetry tracer is on and its request span gets our model and
token counts through `custom_tags` reading our dynamic metadata (see span_tags.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from gateway_stats.envoy.addresses import split_host_port
from gateway_stats.sinks.span_tags import TAG_NAMES

HIGRESS_LOG_FORMAT = '{"ai_log":"%FILTER_STATE(wasm.ai_log:PLAIN)%"}\n'
_LOG_KEY = re.compile(r"^[A-Za-z0-9_.\-]+$")

# Copies our dynamic metadata (ai_log and the `as_separate_log_field` values) into the filter
# state keys Higress uses (`wasm.<key>`), so the access log line is byte-for-byte Higress's. It
# copies on every chunk, not only after the loop, so a stream cut mid-way still leaves the latest
# values behind. bodyChunks() never buffers.
LUA_COPY = """\
local NS = "%(ns)s"
local KEYS = {%(keys)s}
local function copy(handle)
  local md = handle:streamInfo():dynamicMetadata():get(NS)
  if md == nil then
    return
  end
  local fs = handle:streamInfo():filterState()
  for _, k in ipairs(KEYS) do
    local v = md[k]
    if type(v) == "string" then
      fs:set("wasm." .. k, "envoy.string", v)
    end
  end
end
function envoy_on_request(handle)
end
function envoy_on_response(handle)
  copy(handle)
  for _ in handle:bodyChunks() do
    copy(handle)
  end
  copy(handle)
end
"""


@dataclass
class EnvoyOptions:
    listen: str = "127.0.0.1:10000"
    upstream: str = "127.0.0.1:8081"
    upstream_tls: bool = False
    # CA bundle Envoy verifies the upstream's certificate against (and the certificate must name the
    # upstream host). Debian/Ubuntu/distroless path; "" turns verification off (never for real traffic).
    upstream_ca: str = "/etc/ssl/certs/ca-certificates.crt"
    processor: str = "127.0.0.1:18080"
    admin: str = "127.0.0.1:9901"
    access_log: str = "/dev/stdout"
    mode: str = "inline"  # inline | observe
    workers: int = 1  # `serve --workers N` behind each processor address (see envoy/workers.py)
    # dynamic-metadata: the Higress line read from our metadata | filter-state: + Lua copy into wasm.<key>
    log_format: str = "dynamic-metadata"
    namespace: str = "gateway_stats"
    route_name: str = "llm"
    message_timeout_ms: int = 200
    tracing_collector: str | None = None  # HOST:PORT of an OTLP gRPC collector for Envoy's own spans
    # `as_separate_log_field` keys of the gateway-stats config: each gets its own access-log field.
    separate_fields: tuple[str, ...] = ()
    tracing_service_name: str = "envoy"
    tracing_flush_interval_ms: int | None = None  # Envoy's OTLP export interval (Envoy's default: 5000)
    # TLS to gateway-stats (serve --tls-cert/--tls-key): the CA that signed its certificate, the name
    # to expect in it (SNI and SAN), and for mTLS (serve --tls-client-ca) Envoy's client certificate.
    processor_tls_ca: str | None = None
    processor_tls_sni: str = "gateway-stats"
    processor_tls_cert: str | None = None
    processor_tls_key: str | None = None


def _socket(addr: str) -> dict[str, Any]:
    host, port = split_host_port(addr)
    return {"socket_address": {"address": host, "port_value": port}}


def _endpoint(addr: str) -> dict[str, Any]:
    if addr.startswith("unix:"):
        return {"pipe": {"path": addr[len("unix:") :]}}
    return _socket(addr)


def _cluster(
    name: str, addr: str, *, http2: bool = False, tls_sni: str | None = None, tls_ca: str = ""
) -> dict[str, Any]:
    """`addr` may list several endpoints, comma-separated (one per gateway-stats process)."""
    addrs = [a.strip() for a in addr.split(",") if a.strip()]
    is_ip = all(a.startswith("unix:") or split_host_port(a)[0].replace(".", "").isdigit() for a in addrs)
    c: dict[str, Any] = {
        "name": name,
        "type": "STATIC" if is_ip else "STRICT_DNS",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _endpoint(a)}} for a in addrs]}],
        },
    }
    if http2:
        c["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    if tls_sni is not None:
        tls: dict[str, Any] = {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": tls_sni,
        }
        if tls_ca:
            # Without a validation context Envoy accepts any certificate: verify the chain and the name.
            tls["common_tls_context"] = {
                "validation_context": {
                    "trusted_ca": {"filename": tls_ca},
                    "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": tls_sni}}],
                }
            }
        c["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": tls}
    return c


def processor_tls(o: EnvoyOptions) -> dict[str, Any]:
    """TLS (and with a client certificate, mTLS) from Envoy to gateway-stats; the server certificate
    must be signed by `processor_tls_ca` and name `processor_tls_sni` (DNS SAN)."""
    common: dict[str, Any] = {
        "alpn_protocols": ["h2"],  # gRPC servers refuse TLS without h2 negotiated
        "validation_context": {
            "trusted_ca": {"filename": o.processor_tls_ca},
            "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": o.processor_tls_sni}}],
        },
    }
    if o.processor_tls_cert and o.processor_tls_key:
        common["tls_certificates"] = [
            {
                "certificate_chain": {"filename": o.processor_tls_cert},
                "private_key": {"filename": o.processor_tls_key},
            }
        ]
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": o.processor_tls_sni,
            "common_tls_context": common,
        },
    }


def ext_proc_filter(o: EnvoyOptions) -> dict[str, Any]:
    observe = o.mode == "observe"
    cfg: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
        "grpc_service": {"envoy_grpc": {"cluster_name": "gateway_stats"}, "timeout": "5s"},
        # Never break traffic: if gateway-stats is down or slow, requests go on unobserved.
        "failure_mode_allow": True,
        "message_timeout": f"{o.message_timeout_ms / 1000:g}s",
        "processing_mode": {
            "request_header_mode": "SEND",
            "response_header_mode": "SEND",
            # STREAMED, never BUFFERED: a huge request body must not hit a buffer limit (413) because of us.
            "request_body_mode": "STREAMED",
            "response_body_mode": "STREAMED",
            "request_trailer_mode": "SKIP",
            "response_trailer_mode": "SKIP",
        },
        "request_attributes": ["xds.route_name", "xds.cluster_name", "xds.virtual_host_name", "request.id"],
        "response_attributes": ["response.code"],
    }
    if observe:
        # Envoy sends and never waits; every answer (and so our metadata) is ignored: gateway-stats
        # writes the ai_log line itself (serve --ai-log-file).
        cfg["observability_mode"] = True
        # How long Envoy keeps a side stream open after the response ended: gateway-stats ends it itself
        # once it has read the end of stream, so this only matters when it lags behind; then a short
        # value cancels streams whose last messages are still queued for us (their usage is lost).
        cfg["deferred_close_timeout"] = "5s"
    else:
        cfg["allow_mode_override"] = True
        cfg["allow_content_length_header"] = True
        cfg["metadata_options"] = {"receiving_namespaces": {"untyped": [o.namespace]}}
    return {"name": "envoy.filters.http.ext_proc", "typed_config": cfg}


def access_log_format(o: EnvoyOptions) -> str:
    """One JSON object per line. Values are stored pre-escaped, so `"%…%"` is always a valid JSON string."""
    if o.mode == "observe":
        return '{"request_id":"%REQ(X-REQUEST-ID)%","status":%RESPONSE_CODE%,"duration_ms":%DURATION%}\n'
    fields = _log_fields(o)
    if o.log_format == "dynamic-metadata":
        parts = [f'"{k}":"%DYNAMIC_METADATA({o.namespace}:{k})%"' for k in fields]
    else:
        parts = [f'"{k}":"%FILTER_STATE(wasm.{k}:PLAIN)%"' for k in fields]
    return "{" + ",".join(parts) + "}\n"


def tracing(o: EnvoyOptions) -> dict[str, Any]:
    """HCM tracing: OpenTelemetry to the collector, and custom tags read from our dynamic metadata.

    Envoy propagates W3C trace context: it joins a request's `traceparent`, passes the trace on to the
    upstream, and sends it to gateway-stats in the ext_proc gRPC metadata, so our span lands in it.
    """
    return {
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "grpc_service": {"envoy_grpc": {"cluster_name": "otel_collector"}, "timeout": "1s"},
                "service_name": o.tracing_service_name,
            },
        },
        "custom_tags": [
            {
                "tag": name,
                "metadata": {
                    "kind": {"request": {}},
                    "metadata_key": {"key": o.namespace, "path": [{"key": name}]},
                },
            }
            for name in TAG_NAMES
        ],
    }


def _log_fields(o: EnvoyOptions) -> list[str]:
    fields = ["ai_log", *(k for k in o.separate_fields if k != "ai_log")]
    for k in fields:
        if not _LOG_KEY.match(k):
            raise ValueError(f"as_separate_log_field key {k!r} cannot be an access-log field name")
    return fields


def _lua(o: EnvoyOptions) -> str:
    keys = ", ".join(f'"{k}"' for k in _log_fields(o))
    return LUA_COPY % {"ns": o.namespace, "keys": keys}


def _processors(o: EnvoyOptions) -> str:
    """The gateway_stats cluster's endpoints: every worker of every --processor address."""
    from gateway_stats.envoy.workers import worker_endpoints

    addrs = [a.strip() for a in o.processor.split(",") if a.strip()]
    return ",".join(e for a in addrs for e in worker_endpoints(a, o.workers))


def bootstrap(o: EnvoyOptions) -> dict[str, Any]:
    filters: list[dict[str, Any]] = []
    if o.mode == "inline" and o.log_format == "filter-state":
        filters.append(
            {
                "name": "envoy.filters.http.lua",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                    "default_source_code": {"inline_string": _lua(o)},
                },
            }
        )
    filters.append(ext_proc_filter(o))
    filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }
    )
    up_host = split_host_port(o.upstream)[0]
    hcm: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
        "HttpConnectionManager",
        "stat_prefix": "llm",
        "generate_request_id": True,
        "access_log": [
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": o.access_log,
                    "log_format": {"text_format_source": {"inline_string": access_log_format(o)}},
                },
            }
        ],
        "route_config": {
            "name": "llm_routes",
            "virtual_hosts": [
                {
                    "name": "llm",
                    "domains": ["*"],
                    "routes": [
                        {
                            "name": o.route_name,
                            "match": {"prefix": "/"},
                            "route": {
                                "cluster": "llm_upstream",
                                "timeout": "300s",
                                **({"host_rewrite_literal": up_host} if o.upstream_tls else {}),
                            },
                        }
                    ],
                }
            ],
        },
        "http_filters": filters,
    }
    if o.tracing_collector:
        hcm["tracing"] = tracing(o)
    clusters = [
        _cluster(
            "llm_upstream", o.upstream, tls_sni=up_host if o.upstream_tls else None, tls_ca=o.upstream_ca
        ),
        _cluster("gateway_stats", _processors(o), http2=True),
    ]
    if o.workers > 1:
        # Several connections per worker; each new stream goes to the one with fewer active streams.
        clusters[1]["lb_policy"] = "LEAST_REQUEST"
    # Each observed request holds one gRPC stream: the default max_requests (1024) would cap them.
    clusters[1]["circuit_breakers"] = {
        "thresholds": [
            {
                "priority": "DEFAULT",
                "max_connections": 100000,
                "max_pending_requests": 100000,
                "max_requests": 100000,
                "max_retries": 10,
            }
        ]
    }
    if o.processor_tls_ca:
        clusters[1]["transport_socket"] = processor_tls(o)
    if o.tracing_collector:
        clusters.append(_cluster("otel_collector", o.tracing_collector, http2=True))
    doc: dict[str, Any] = {
        "admin": {"address": _socket(o.admin)},
        "static_resources": {
            "listeners": [
                {
                    "name": "llm",
                    "address": _socket(o.listen),
                    "filter_chains": [
                        {
                            "filters": [
                                {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        },
    }
    if o.tracing_collector and o.tracing_flush_interval_ms is not None:
        doc["layered_runtime"] = {
            "layers": [
                {
                    "name": "static",
                    "static_layer": {
                        "tracing.opentelemetry.flush_interval_ms": o.tracing_flush_interval_ms,
                        "tracing.opentelemetry.min_flush_spans": 1,
                    },
                }
            ]
        }
    return doc


def render(o: EnvoyOptions) -> str:
    head = (
        "# Envoy bootstrap generated by `gateway-stats envoy-config` "
        f"(mode: {o.mode}, access log: {o.log_format if o.mode == 'inline' else 'observe'}).\n"
    )
    if o.mode == "observe":
        head += (
            "# Observability mode: Envoy ignores every ext_proc answer, so no ai_log reaches this access\n"
            "# log. Run `gateway-stats serve --ai-log-file PATH` to have gateway-stats write the\n"
            '# {"ai_log":"…","request_id":"…"} lines itself; join them to this log by request_id.\n'
            "# Chosen because Envoy never waits for gateway-stats here: no latency is added to the traffic\n"
            "# whatever the sidecar's load (streams it cannot take pass unobserved, counted by Envoy).\n"
        )
    return head + yaml.safe_dump(bootstrap(o), sort_keys=False, width=120)
