"""Mock LLM upstream for the demo, the end-to-end tests behind Envoy and the benchmarks.

A small asyncio HTTP/1.1 server (no framework) that answers like OpenAI (chat completions, legacy
completions, embeddings, Responses API), Anthropic (messages) and Gemini (generateContent /
streamGenerateContent).  The request decides everything:

* the path picks the provider shape (suffix match, so ``/openai/v1/chat/completions`` works too);
* the JSON body gives ``model``, ``stream`` and ``stream_options.include_usage``;
* optional ``x-mock-*`` request headers pick the scenario (see ``SCENARIO_HEADERS``).

Endpoints: ``POST`` ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/responses``,
``/v1/messages``, ``/v1beta/models/{model}:generateContent`` and ``:streamGenerateContent[?alt=sse]``;
``GET /healthz``; ``POST /echo-size`` (``{"bytes", "sha256"}`` of the whole request body); ``GET
/_mock/records[?limit=N]``, ``GET|DELETE /_mock/records/{request_id}``, ``DELETE /_mock/records``.
Request bodies of any size are accepted (streamed, counted and hashed); only the first
``max_parse_bytes`` are kept for parsing.  SSE answers use chunked encoding, JSON ones Content-Length;
every answer carries ``x-mock-request-id`` (the record key: ``x-request-id`` if sent, else generated).

Every answer is deterministic: :func:`expected` returns the ground truth (:class:`Truth`) for a request
without talking to the server, and the server builds its responses from that very function.  The server
also keeps a bounded :class:`RequestRecord` per request with the monotonic timestamp, wire offset and size
of every response write, readable in-process (``MockLLM.records``) or over HTTP (``/_mock/records``).

Token semantics: see :mod:`gateway_stats.testing.truth`.

This module is the stable import surface and the command line; the mock is split by concept:
``truth`` (what is answered: :class:`Truth`, :func:`expected`, token counts), ``bodies`` (the JSON
bodies, SSE events and error bodies built from a truth), ``scenarios`` (the ``x-mock-*`` transport
scenarios: delays, splits, encodings, aborts) and ``mock_server`` (:class:`MockLLM`, the HTTP server and
its :class:`RequestRecord`).  Import from here: these names stay put when the files behind them move.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from gateway_stats.testing.bodies import build_events, build_json, error_body, stream_error_event
from gateway_stats.testing.mock_server import (
    DEFAULT_MAX_PARSE_BYTES,
    DEFAULT_MAX_RECORDS,
    MockLLM,
    RequestRecord,
)
from gateway_stats.testing.scenarios import SCENARIO_HEADERS
from gateway_stats.testing.truth import DEFAULT_EVENTS, ToolCall, Truth, expected, provider_for_path

__all__ = [
    "DEFAULT_EVENTS",
    "DEFAULT_MAX_PARSE_BYTES",
    "DEFAULT_MAX_RECORDS",
    "SCENARIO_HEADERS",
    "MockLLM",
    "RequestRecord",
    "ToolCall",
    "Truth",
    "build_events",
    "build_json",
    "error_body",
    "expected",
    "main",
    "provider_for_path",
    "stream_error_event",
]


def _split_hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"
    try:
        return host, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port in {value!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway_stats.testing.mockllm",
        description="Mock LLM upstream (OpenAI / Anthropic / Gemini shapes) with x-mock-* scenario headers.",
    )
    parser.add_argument(
        "--listen", default="127.0.0.1:8081", type=_split_hostport, help="HOST:PORT (port 0: any)"
    )
    parser.add_argument("--max-records", type=int, default=DEFAULT_MAX_RECORDS)
    parser.add_argument(
        "--max-parse-bytes",
        type=int,
        default=DEFAULT_MAX_PARSE_BYTES,
        help="bodies bigger than this are read and counted but answered as if they were {}",
    )
    args = parser.parse_args(argv)
    host, port = args.listen

    async def run() -> None:
        mock = MockLLM(host, port, max_records=args.max_records, max_parse_bytes=args.max_parse_bytes)
        await mock.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        print(f"mock-llm listening on {host}:{mock.port}", flush=True)
        try:
            await stop.wait()
        finally:
            await mock.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
