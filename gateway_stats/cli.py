"""The `gateway-stats` command line: serve, check-config, prices, envoy-config, demo, mock-llm."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys

from gateway_stats import __version__


def _serve(args: argparse.Namespace) -> int:
    from gateway_stats.config import ConfigError, default_config, load_config
    from gateway_stats.config.store import with_environment
    from gateway_stats.envoy.listen import ListenSecurity
    from gateway_stats.envoy.server import ServeOptions, serve

    listen = ListenSecurity(
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        socket_mode=int(args.socket_mode, 8),
        socket_group=args.socket_group,
    )
    try:
        listen.validate()
    except ValueError as e:
        print(f"gateway-stats: {e}", file=sys.stderr)
        return 1

    if not args.config:
        try:
            cfg = default_config()  # prices from the MODEL_RATES environment variable, when set
        except ConfigError as e:
            print(f"gateway-stats: invalid pricing:\n{e}", file=sys.stderr)
            return 1
    if args.config:
        try:
            cfg = load_config(args.config)
        except ConfigError as e:
            print(f"gateway-stats: invalid config:\n{e}", file=sys.stderr)
            return 1
        except OSError as e:
            print(f"gateway-stats: cannot read config: {e}", file=sys.stderr)
            return 1
    if with_environment(cfg, os.environ).extensions.tracing.enabled:  # the config or the OTEL_* variables
        from gateway_stats.sinks.tracing import exporter_kinds

        try:
            exporter_kinds()
        except ValueError as e:
            print(f"gateway-stats: tracing: {e}", file=sys.stderr)
            return 1
    from gateway_stats.envoy.workers import Supervisor, WorkerSpec, default_workers

    worker = WorkerSpec.from_env()
    workers = args.workers if args.workers is not None else default_workers()
    if worker is None and workers > 1:
        # N processes behind the same addresses; each runs this same command line as a worker.
        records = cfg.extensions.records
        flush = records.drain_seconds + 2.0 if records is not None and records.enabled else 0.0
        # A worker's stop: streams drain, then its records queues flush; the supervisor waits for both.
        return Supervisor(
            args.argv, workers, args.grpc_address, args.metrics_address, args.drain_seconds + flush
        ).run()
    opts = ServeOptions(
        config_path=args.config,
        grpc_address=args.grpc_address,
        metrics_address=args.metrics_address,
        drain_seconds=args.drain_seconds,
        ai_log_file=args.ai_log_file,
        config_poll_seconds=args.config_poll_seconds,
        listen=listen,
        health_address=args.health_address,
        metrics_token_file=args.metrics_token_file,
        max_rss_mib=args.max_rss_mib,
        worker=worker,
    )
    try:
        import uvloop

        runner = uvloop.run if args.uvloop else asyncio.run
    except ImportError:
        runner = asyncio.run
    return int(runner(serve(opts)))


def _check_config(args: argparse.Namespace) -> int:
    from gateway_stats.config import ConfigError, load_config

    rc = 0
    for path in args.files:
        try:
            cfg = load_config(path)
        except ConfigError as e:
            print(str(e), file=sys.stderr)
            rc = 1
            continue
        except OSError as e:
            print(f"{path}: cannot read: {e.strerror or e}", file=sys.stderr)
            rc = 1
            continue
        pr = cfg.extensions.pricing
        priced = sum(len(f.prices) for f in pr.files)
        prices = f"{len(pr.files)} price files ({priced} models)" if pr.files else "no price files"
        if pr.model_rates:
            prices += f", {len(pr.model_rates)} MODEL_RATES ({pr.model_rates_from})"
        if pr.overrides:
            prices += f", {len(pr.overrides)} price overrides"
        print(
            f"{path}: ok ({len(cfg.default.attributes)} attributes, {len(cfg.match_rules)} match rules, "
            f"{prices})"
        )
    return rc


def _prices(args: argparse.Namespace) -> int:
    from gateway_stats.config import ConfigError, default_config, load_config
    from gateway_stats.pricing.explain import explain

    try:
        cfg = load_config(args.config) if args.config else default_config()
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 1
    catalogue = cfg.extensions.pricing.catalogue()
    rc = 0
    for model in args.model:
        lines = explain(catalogue, model, route=args.route or "", provider=args.provider or "")
        print("\n".join(lines))
        if not catalogue.candidates(model, route=args.route or "", provider=args.provider or ""):
            rc = 1
    return rc


def _envoy_config(args: argparse.Namespace) -> int:
    from gateway_stats.envoy.bootstrap import EnvoyOptions, render

    opts = EnvoyOptions(
        listen=args.listen,
        upstream=args.upstream,
        upstream_tls=args.upstream_tls,
        upstream_ca=args.upstream_ca,
        processor=args.processor,
        admin=args.admin,
        access_log=args.access_log,
        mode=args.mode,
        workers=args.workers,
        log_format=args.log_format,
        namespace=args.namespace,
        route_name=args.route_name,
        message_timeout_ms=args.message_timeout_ms,
        tracing_collector=args.tracing_collector,
        tracing_service_name=args.tracing_service_name,
        processor_tls_ca=args.processor_tls_ca,
        processor_tls_sni=args.processor_tls_sni,
        processor_tls_cert=args.processor_tls_cert,
        processor_tls_key=args.processor_tls_key,
    )
    try:
        if args.config:
            from gateway_stats.config import ConfigError, load_config

            try:
                cfg = load_config(args.config)
            except ConfigError as e:
                print(f"gateway-stats envoy-config: {e}", file=sys.stderr)
                return 1
            opts.separate_fields = cfg.separate_log_fields()
            opts.namespace = cfg.extensions.metadata_namespace
        text = render(opts)
    except ValueError as e:
        print(f"gateway-stats envoy-config: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def _report(args: argparse.Namespace) -> int:
    from gateway_stats.records.cli import run_report

    return run_report(args)


def _demo(args: argparse.Namespace) -> int:
    from gateway_stats.demo import run_demo

    return run_demo(keep_running=args.keep_running)


def _mock(args: argparse.Namespace) -> int:
    from gateway_stats.testing.mockllm import main as mock_main

    return int(mock_main(["--listen", args.listen]))


def _positive(v: str) -> int:
    n = int(v)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gateway-stats", description="AI-traffic observability sidecar for Envoy (ext_proc)."
    )
    p.add_argument("--version", action="version", version=f"gateway-stats {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the ext_proc server")
    s.add_argument("--config", help="config file (Higress ai-statistics YAML/JSON; reloaded on change)")
    s.add_argument("--grpc-address", default="127.0.0.1:18080", help="HOST:PORT or unix:/path")
    s.add_argument(
        "--metrics-address", default="127.0.0.1:19090", help="HOST:PORT for /metrics, /healthz, /readyz"
    )
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.add_argument(
        "--drain-seconds", type=float, default=10.0, help="on SIGTERM, time given to in-flight streams"
    )
    s.add_argument(
        "--ai-log-file", help='write {"ai_log":…} lines here ("-" = stdout); for observability mode'
    )
    s.add_argument("--no-uvloop", dest="uvloop", action="store_false", help="use the stock asyncio loop")
    s.add_argument(
        "--config-poll-seconds", type=float, default=2.0, help="seconds between config file checks"
    )
    s.add_argument("--tls-cert", help="PEM certificate chain: serve ext_proc over TLS")
    s.add_argument("--tls-key", help="PEM private key of --tls-cert")
    s.add_argument("--tls-client-ca", help="PEM CA bundle: require client certificates signed by it (mTLS)")
    s.add_argument("--socket-mode", default="660", help="octal mode of a unix: gRPC socket (default 660)")
    s.add_argument("--socket-group", help="group (name or gid) given to a unix: gRPC socket")
    s.add_argument(
        "--health-address", help="HOST:PORT serving /healthz and /readyz only (then not on --metrics-address)"
    )
    s.add_argument("--metrics-token-file", help="file holding a bearer token that /metrics then requires")
    s.add_argument(
        "--max-rss-mib",
        type=float,
        default=0.0,
        help="past this RSS, drain and exit 0 for the supervisor to restart (grpcio's per-stream growth)",
    )
    s.add_argument(
        "--workers",
        type=_positive,
        help="worker processes behind the same addresses (default: the CPUs this process may use); "
        "1 = a single process. With several, Envoy must hold several connections to spread its streams: "
        "generate its config with `envoy-config --workers N`",
    )
    s.set_defaults(func=_serve)

    c = sub.add_parser("check-config", help="validate config files; exit 1 naming each bad field")
    c.add_argument("files", nargs="+")
    c.set_defaults(func=_check_config)

    pr = sub.add_parser(
        "prices", help="what a model is priced at: each price and its source (genai-prices, files, ...)"
    )
    pr.add_argument("--model", action="append", required=True, help="model name (repeat for several)")
    pr.add_argument("--config", help="config file whose gateway_stats.pricing block applies")
    pr.add_argument("--route", help="Envoy route name, for route overrides")
    pr.add_argument(
        "--provider",
        choices=["openai", "anthropic", "gcp.gemini"],
        help="the API the calls use (helps the built-in lookup, e.g. text-embedding-3-small)",
    )
    pr.set_defaults(func=_prices)

    e = sub.add_parser("envoy-config", help="print an Envoy bootstrap with gateway-stats attached")
    e.add_argument("--listen", default="0.0.0.0:10000", help="where Envoy listens for LLM traffic")
    e.add_argument("--upstream", default="127.0.0.1:8081", help="the LLM upstream HOST:PORT")
    e.add_argument(
        "--upstream-tls", action="store_true", help="TLS to the upstream (SNI and Host = its name)"
    )
    e.add_argument(
        "--upstream-ca",
        default="/etc/ssl/certs/ca-certificates.crt",
        metavar="FILE",
        help="with --upstream-tls: CA bundle that verifies the upstream's certificate, which must also "
        "name the upstream host; '' disables verification (default: %(default)s)",
    )
    e.add_argument(
        "--processor",
        default="127.0.0.1:18080",
        help="gateway-stats gRPC HOST:PORT or unix:/path; several, comma-separated, to spread the streams "
        "over several gateway-stats processes (Envoy balances the gRPC streams across them)",
    )
    e.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="`serve --workers N` behind each --processor: list a Unix socket's per-worker paths, or a TCP "
        "address several times, with least-request balancing, so the streams spread over the workers",
    )
    e.add_argument("--admin", default="127.0.0.1:9901", help="Envoy admin HOST:PORT")
    e.add_argument("--access-log", default="/dev/stdout", help="access log path")
    e.add_argument(
        "--mode",
        choices=["inline", "observe"],
        default="inline",
        help="inline: Envoy waits for each answer and logs our ai_log (Higress's line); a few ms per call "
        "while the sidecar keeps up. observe: observability_mode, Envoy never waits and gateway-stats "
        "writes the ai_log lines itself (serve --ai-log-file): choose it when latency matters more than "
        "the line in Envoy's access log, or when peaks exceed what the sidecar observes inline",
    )
    e.add_argument(
        "--log-format",
        choices=["filter-state", "dynamic-metadata"],
        default="dynamic-metadata",
        help="dynamic-metadata: the ai_log line read from our dynamic metadata (the Higress line, no Lua); "
        "filter-state: a Lua filter also copies it into Higress's wasm.ai_log filter state, for access-log "
        "formats that read %%FILTER_STATE(wasm.ai_log:PLAIN)%% (a Higress cutover); costs Envoy ~100-170 "
        "us of CPU per call (docs/benchmarks.md) (default: %(default)s)",
    )
    e.add_argument(
        "--namespace", default="gateway_stats", help="dynamic metadata namespace (must match config)"
    )
    e.add_argument("--route-name", default="llm", help="name of the catch-all route (ai_route label)")
    e.add_argument("--message-timeout-ms", type=int, default=200)
    e.add_argument(
        "--config",
        help="the gateway-stats config: its as_separate_log_field keys get their own access-log fields "
        "and its metadata_namespace is used",
    )
    e.add_argument(
        "--tracing-collector",
        metavar="HOST:PORT",
        help="turn on Envoy's OpenTelemetry tracer, exporting OTLP/gRPC here; its request span then "
        "carries model and token tags from our dynamic metadata",
    )
    e.add_argument("--tracing-service-name", default="envoy", help="service.name of Envoy's spans")
    e.add_argument("--processor-tls-ca", help="TLS to gateway-stats: the PEM CA that signed its certificate")
    e.add_argument(
        "--processor-tls-sni",
        default="gateway-stats",
        help="the name gateway-stats' certificate carries (SAN)",
    )
    e.add_argument("--processor-tls-cert", help="mTLS: Envoy's PEM client certificate for gateway-stats")
    e.add_argument("--processor-tls-key", help="mTLS: the private key of --processor-tls-cert")
    e.set_defaults(func=_envoy_config)

    r = sub.add_parser("report", help="calls, errors, tokens, cost and latency from the analytics records")
    from gateway_stats.records.cli import add_report_arguments

    add_report_arguments(r)
    r.set_defaults(func=_report)

    d = sub.add_parser("demo", help="Envoy + gateway-stats + mock LLM, real traffic, show ai_log and metrics")
    d.add_argument(
        "--keep-running",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stay up for your own curl afterwards (default: when run from a terminal)",
    )
    d.set_defaults(func=_demo)

    m = sub.add_parser("mock-llm", help="run the bundled mock OpenAI/Anthropic/Gemini upstream")
    m.add_argument("--listen", default="127.0.0.1:8081")
    m.set_defaults(func=_mock)
    return p


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(raw)
    args.argv = raw  # what the workers of `serve --workers N` run again
    level = getattr(args, "log_level", "info")
    from gateway_stats.envoy.workers import WORKER_ENV

    worker = os.environ.get(WORKER_ENV)
    tag = f"w{json.loads(worker)['index']} " if worker else ""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format=f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s",
        stream=sys.stderr,
    )
    from gateway_stats.core.redact import install_log_redaction

    install_log_redaction()  # credentials never reach a log line, at any level
    return int(args.func(args))
