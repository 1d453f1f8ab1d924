"""Incremental decoders for compressed response bodies, used for analysis only.

The bytes Envoy forwards are never touched; we decode a copy so usage inside gzip/deflate/br
answers is still seen (Higress silently records nothing for them). A corrupt stream stops decoding
instead of raising.

Memory is bounded per input chunk, not just per call: `feed` and `flush` yield the output in pieces
of at most `PIECE` bytes (zlib's `max_length` + `unconsumed_tail`, brotli's `output_buffer_limit`),
and the caller consumes each piece before the next is decompressed. A decompression bomb (512 MiB
of zeros in 0.5 MB of gzip, or far more in brotli) therefore never materialises: the caller stops
pulling pieces once its own cap is reached.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Protocol

try:
    import brotli
except ImportError:  # pragma: no cover - brotli is a declared dependency
    brotli = None

PIECE = 64 * 1024  # largest decoded piece handed to the caller at once


class Decoder(Protocol):
    def feed(self, data: bytes) -> Iterator[bytes]: ...
    def flush(self) -> Iterator[bytes]: ...


class _Identity:
    def feed(self, data: bytes) -> Iterator[bytes]:
        if data:
            yield data

    def flush(self) -> Iterator[bytes]:
        return iter(())


class _Zlib:
    def __init__(self, wbits: int) -> None:
        self._d = zlib.decompressobj(wbits)
        self._raw_fallback = wbits == zlib.MAX_WBITS  # "deflate" is zlib-wrapped or raw in the wild
        self._started = False
        self._head = b""

    def feed(self, data: bytes) -> Iterator[bytes]:
        if not self._started and self._raw_fallback and data:
            if len(self._head) + len(data) < 2:  # zlib needs both header bytes to reject a raw stream
                self._head += data
                return
            data, self._head = self._head + data, b""
            self._started = True
            try:
                first = self._d.decompress(data, PIECE)
            except zlib.error:
                self._d = zlib.decompressobj(-zlib.MAX_WBITS)
                first = self._d.decompress(data, PIECE)
            if first:
                yield first
            if self._d.unconsumed_tail or len(first) == PIECE:
                yield from self._drain(self._d.unconsumed_tail)
            return
        self._started = True
        yield from self._drain(data)

    def _drain(self, data: bytes) -> Iterator[bytes]:
        d = self._d
        while True:
            out = d.decompress(data, PIECE)
            if out:
                yield out
            data = d.unconsumed_tail
            # A full piece may leave more output pending inside zlib even with no input left.
            if not data and len(out) < PIECE:
                return
            if d.eof:
                return

    def flush(self) -> Iterator[bytes]:
        out = self._d.flush()  # pending output is below one window after _drain emptied the input
        if out:
            yield out


class _Brotli:
    def __init__(self) -> None:
        assert brotli is not None
        self._d = brotli.Decompressor()

    def feed(self, data: bytes) -> Iterator[bytes]:
        d = self._d
        if d.is_finished():
            return
        out = d.process(data, output_buffer_limit=PIECE)
        # brotli 1.2's can_accept_more_data() can say True while output is still pending (seen with
        # small inputs): drain with empty input until nothing more comes out.
        while out:
            yield bytes(out)
            if d.is_finished():
                return
            out = d.process(b"", output_buffer_limit=PIECE)

    def flush(self) -> Iterator[bytes]:
        return iter(())


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
