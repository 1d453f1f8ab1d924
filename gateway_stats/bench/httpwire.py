"""Just enough HTTP/1.1 for the bench upstream and client: heads, Content-Length and chunked bodies.

Hand-rolled because both sides must stay cheap and predictable under load (a framework's per-request
cost would blur what Envoy and the sidecar add), and because the client must see each read as it
arrives to time SSE events.
"""

from __future__ import annotations

HEAD_END = b"\r\n\r\n"


def parse_head(head: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """(start line, headers with lower-cased names) of a head without its final blank line."""
    lines = head.split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for ln in lines[1:]:
        name, _, value = ln.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers


class ChunkedDecoder:
    """Incremental `Transfer-Encoding: chunked` decoder: feed bytes, get payload, `done` at the end."""

    __slots__ = ("_buf", "_left", "_state", "done", "rest")

    def __init__(self) -> None:
        self._buf = b""
        self._left = 0  # payload bytes still due in the current chunk
        self._state = 0  # 0: size line, 1: data, 2: CRLF after data, 3: trailers
        self.done = False
        self.rest = b""  # bytes after the terminating chunk (the next message)

    def feed(self, data: bytes) -> bytes:
        buf = self._buf + data if self._buf else data
        self._buf = b""
        out: list[bytes] = []
        i = 0
        n = len(buf)
        while i < n and not self.done:
            if self._state == 1:
                take = min(self._left, n - i)
                out.append(buf[i : i + take])
                i += take
                self._left -= take
                if self._left == 0:
                    self._state = 2
            elif self._state == 2:
                if n - i < 2:
                    break
                i += 2
                self._state = 0
            else:
                j = buf.find(b"\r\n", i)
                if j < 0:
                    break
                line = buf[i:j]
                i = j + 2
                if self._state == 3:
                    if not line:  # blank line ends the trailers
                        self.done = True
                    continue
                size = int(line.split(b";", 1)[0], 16)
                if size == 0:
                    self._state = 3
                else:
                    self._left = size
                    self._state = 1
        if self.done:
            self.rest = buf[i:]
        else:
            self._buf = buf[i:]
        return b"".join(out)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
