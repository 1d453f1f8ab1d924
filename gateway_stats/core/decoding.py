"""Incremental decoders for compressed response bodies, used for analysis only.

The bytes Envoy forwards are never touched; we decode a copy so usage inside gzip/deflate/br
answers is still seen (Higress silently records nothing for them). Output per call is capped by
the caller; a corrupt stream stops decoding instead of raising.
"""

from __future__ import annotations

import zlib
from typing import Protocol

try:
    import brotli
except ImportError:  # pragma: no cover - brotli is a declared dependency
    brotli = None


class Decoder(Protocol):
    def feed(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class _Identity:
    def feed(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _Zlib:
    def __init__(self, wbits: int) -> None:
        self._d = zlib.decompressobj(wbits)
        self._raw_fallback = wbits == zlib.MAX_WBITS  # "deflate" is zlib-wrapped or raw in the wild
        self._started = False
        self._head = b""

    def feed(self, data: bytes) -> bytes:
        if not self._started and self._raw_fallback and data:
            if len(self._head) + len(data) < 2:  # zlib needs both header bytes to reject a raw stream
                self._head += data
                return b""
            data, self._head = self._head + data, b""
            self._started = True
            try:
                return self._d.decompress(data)
            except zlib.error:
                self._d = zlib.decompressobj(-zlib.MAX_WBITS)
                return self._d.decompress(data)
        self._started = True
        return self._d.decompress(data)

    def flush(self) -> bytes:
        return self._d.flush()


class _Brotli:
    def __init__(self) -> None:
        assert brotli is not None
        self._d = brotli.Decompressor()

    def feed(self, data: bytes) -> bytes:
        return bytes(self._d.process(data))

    def flush(self) -> bytes:
        return b""


def decoder_for(content_encoding: str) -> Decoder | None:
    """A decoder for the header value, identity for none, None for an encoding we cannot read."""
    enc = content_encoding.strip().lower()
    if not enc or enc == "identity":
        return _Identity()
    if enc in ("gzip", "x-gzip"):
        return _Zlib(16 + zlib.MAX_WBITS)
    if enc == "deflate":
        return _Zlib(zlib.MAX_WBITS)
    if enc == "br" and brotli is not None:
        return _Brotli()
    return None
