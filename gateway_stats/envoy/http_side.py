"""The side HTTP endpoint: /metrics (Prometheus text), /healthz (alive), /readyz (serving ext_proc),
and JSON routes registered by features (`POST /v1/feedback`).

A few lines of asyncio instead of a web framework: a handful of routes, no dependency to carry. A JSON
route is a plain function (method, lower-cased headers, body) -> (status, body), so its rules are tested
without a socket.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Mapping

# Text format 0.0.4: what the body is, and what every Prometheus version parses.
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

log = logging.getLogger(__name__)

JsonRoute = Callable[[str, Mapping[str, str], bytes], tuple[int, bytes]]
MAX_BODY_BYTES = 1 << 20  # no side route takes more; a larger body is refused before it is read
_REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
}


class SideHTTP:
    """`metrics` / `health` choose the routes served (`serve --health-address` puts health on a port of
    its own); with `token`, /metrics wants `Authorization: Bearer <token>` (health never does: probes;
    /v1/feedback has its own auth)."""

    def __init__(
        self,
        render: Callable[[], bytes],
        ready: Callable[[], bool],
        routes: Mapping[str, JsonRoute] | None = None,
        *,
        token: str | None = None,
        metrics: bool = True,
        health: bool = True,
    ) -> None:
        self.render = render  # the /metrics body
        self.ready = ready
        self.routes: dict[str, JsonRoute] = dict(routes or {})
        self.server: asyncio.AbstractServer | None = None
        self._auth = f"Bearer {token}".encode() if token else None
        self._metrics = metrics
        self._health = health

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
                headers: dict[str, str] = {}
                for _ in range(100):  # headers (bounded)
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = h.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                if "close" in headers.get("connection", "").lower():
                    keep_alive = False
                method = parts[0] if parts else ""
                target = parts[1].split("?", 1)[0] if len(parts) > 1 else "/"
                extra = ""
                length = headers.get("content-length", "0")
                route = self.routes.get(target)
                metrics = target == "/metrics" and self._metrics
                auth = headers.get("authorization", "").encode("latin-1")
                if "transfer-encoding" in headers:
                    status, ctype, body = "411 Length Required", "text/plain", b"send a Content-Length\n"
                    keep_alive = False
                elif not (length.isascii() and length.isdigit()) or int(length) > MAX_BODY_BYTES:
                    status, ctype, body = "413 Content Too Large", "text/plain", b"body too large\n"
                    keep_alive = False  # the unread body would be taken for the next request
                elif route is not None:
                    data = await reader.readexactly(int(length)) if int(length) else b""
                    try:
                        code, body = route(method, headers, data)
                    except Exception:
                        log.exception("side HTTP route %s", target)
                        code, body = 500, b'{"error":"internal error"}\n'
                    status, ctype = f"{code} {_REASONS.get(code, 'Status')}", "application/json"
                    if code == 401:
                        extra = "WWW-Authenticate: Bearer\r\n"
                elif int(length):
                    await reader.readexactly(int(length))  # keep the connection usable
                    status, ctype, body = self._route(method, target)
                elif metrics and self._auth is not None and not hmac.compare_digest(auth, self._auth):
                    status, ctype, body = "401 Unauthorized", "text/plain", b"unauthorized\n"
                    extra = "WWW-Authenticate: Bearer\r\n"
                elif metrics and method in ("GET", "HEAD"):
                    # formatted in a worker thread: a big scrape must not stall the ext_proc streams
                    body = await asyncio.to_thread(self.render)
                    status, ctype = "200 OK", CONTENT_TYPE_PLAIN_0_0_4
                else:
                    status, ctype, body = self._route(method, target)
                head = (
                    f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}"
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
        if not self._health:
            return "404 Not Found", "text/plain", b"not found\n"
        if path == "/healthz":
            return "200 OK", "text/plain", b"ok\n"
        if path == "/readyz":
            if self.ready():
                return "200 OK", "text/plain", b"ready\n"
            return "503 Service Unavailable", "text/plain", b"not ready\n"
        return "404 Not Found", "text/plain", b"not found\n"
