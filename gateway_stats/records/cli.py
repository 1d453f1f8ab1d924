"""`gateway-stats report`: arguments and entry point (kept here so cli.py stays a thin dispatcher)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway_stats.records.report import BY


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        help="the records store: a SQLite file, a PostgreSQL DSN (postgresql://…) or a JSON-lines file; "
        "default: the store in --config (SQLite, else PostgreSQL, else JSON lines)",
    )
    p.add_argument("--config", help="take the store from this gateway-stats config's records block")
    p.add_argument("--since", default="7d", help="7d, 24h, 30m, 2w, or an ISO date/time (UTC); 'all' for all")
    p.add_argument("--until", help="end (exclusive): an ISO date/time (UTC), or a duration ago like 1d")
    p.add_argument("--by", choices=BY, default="model", help="group rows by (default model)")
    p.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="output (default table)"
    )
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page with charts")


def _source(args: argparse.Namespace) -> str | None:
    if args.db:
        return str(args.db)
    if not args.config:
        return None
    from gateway_stats.config import load_config

    rc = load_config(args.config).extensions.records
    if rc is None:
        return None
    if rc.sqlite is not None:
        return rc.sqlite.path
    if rc.postgres is not None:
        return rc.postgres.dsn
    if rc.jsonl is not None:
        return rc.jsonl.path
    return None


def run_report(args: argparse.Namespace) -> int:
    from gateway_stats.config import ConfigError
    from gateway_stats.records import html, report
    from gateway_stats.records.read import parse_since

    try:
        source = _source(args)
    except ConfigError as e:
        print(f"gateway-stats report: invalid config:\n{e}", file=sys.stderr)
        return 1
    if not source:
        print("gateway-stats report: give --db PATH|DSN (or --config with a records store)", file=sys.stderr)
        return 2
    try:
        start = None if args.since in ("all", "") else parse_since(args.since)
        end = parse_since(args.until) if args.until else None
    except ValueError as e:
        print(f"gateway-stats report: {e}", file=sys.stderr)
        return 2
    try:
        rep = report.build(source, args.by, start, end)
    except (OSError, ValueError) as e:
        print(f"gateway-stats report: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a driver error (PostgreSQL down, not a records database, ...)
        print(f"gateway-stats report: cannot read {source}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if args.format == "json":
        sys.stdout.write(report.to_json(rep) + "\n")
    elif args.format == "csv":
        sys.stdout.write(report.to_csv(rep))
    else:
        report.render_table(rep)
    if args.html:
        path = Path(args.html)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html.render(rep), encoding="utf-8")
        print(f"HTML report: {path.resolve()}", file=sys.stderr if args.format != "table" else sys.stdout)
    return 0
