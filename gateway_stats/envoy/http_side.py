"""The side HTTP endpoint: /metrics (Prometheus text), /healthz (alive), /readyz (serving ext_proc).

A few lines of asyncio instead of a web framework: three GET routes, no dependency to carry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

# Text format 0.0.4: what the body is, and what every Prometheus version parses.
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

log = logging.getLogger(__name__)


class SideHTTP:
    def __init__(self, render: Callable[[], bytes], ready: Callable[[], bool]) -> None:
        self.render = render  # the /metrics body
        self.ready = ready
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int, reuse_port: bool = False) -> int:
        # reuse_port: the workers of `serve --workers N` share the address (envoy/workers.py)
        self.server = await asyncio.start_server(self._handle, host, port, reuse_port=reuse_port or None)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                parts = line.decode("latin-1").split()
                keep_alive = True
                while True:  # headers
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    if h.lower().startswith(b"connection:") and b"close" in h.lower():
                        keep_alive = False
                method = parts[0] if parts else ""
                target = parts[1].split("?", 1)[0] if len(parts) > 1 else "/"
                if target == "/metrics" and method in ("GET", "HEAD"):
                    # formatted in a worker thread: a big scrape must not stall the ext_proc streams
                    body = await asyncio.to_thread(self.render)
                    status, ctype = "200 OK", CONTENT_TYPE_PLAIN_0_0_4
                else:
                    status, ctype, body = self._route(method, target)
                head = (
                    f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    f"{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}\r\n"
                )
                writer.write(head.encode() + (body if method != "HEAD" else b""))
                await writer.drain()
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("side HTTP handler")
        finally:
            writer.close()

    def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"method not allowed\n"
        if path == "/healthz":
            return "200 OK", "text/plain", b"ok\n"
        if path == "/readyz":
            if self.ready():
                return "200 OK", "text/plain", b"ready\n"
            return "503 Service Unavailable", "text/plain", b"not ready\n"
        return "404 Not Found", "text/plain", b"not found\n"
