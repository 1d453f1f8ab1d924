"""Coverage-guided fuzzing with atheris (libFuzzer for Python): `make fuzz`.

    python tests/fuzz/atheris_harness.py TARGET [libFuzzer flags...] [CORPUS_DIR]

Targets: observer (whole CallObserver: request, response headers, any body bytes, any split, every
content type and encoding), sse, gjson (path text and document), config (YAML/JSON text), decoders.
A target fails on any exception the code under test does not document (PathError, ConfigError,
zlib.error / brotli.error from a bare decoder); libFuzzer then writes the input to crash-<sha1>.
Not a pytest module: the hypothesis slice in this directory is what CI runs.
"""

from __future__ import annotations

import itertools
import sys
import zlib

import atheris

with atheris.instrument_imports(include=["gateway_stats"]):
    import brotli
    import orjson

    from gateway_stats.config import ConfigError, default_config, parse_text
    from gateway_stats.core import ai_log as ailog
    from gateway_stats.core import decoding, gjson
    from gateway_stats.core.observer import CallObserver
    from gateway_stats.core.sse import SSEFramer

MS = 1_000_000
PATHS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/messages",
    "/v1beta/models/g:streamGenerateContent?alt=sse",
    "/v1beta/models/g:generateContent",
    "/x",
]
CTYPES = ["text/event-stream", "application/json", "text/plain"]
ENCODINGS = ["", "gzip", "deflate", "br", "zstd"]
CONFIGS = [default_config(), parse_text("use_default_attributes: true\nvalue_length_limit: 100\n")]


def _cuts(fdp: atheris.FuzzedDataProvider) -> list[int]:
    return [fdp.ConsumeIntInRange(0, 1 << 16) for _ in range(fdp.ConsumeIntInRange(0, 8))]


def _splits(cuts: list[int], data: bytes) -> list[bytes]:
    if not data:
        return []
    points = sorted({c % len(data) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


def observer(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    obs = CallObserver(CONFIGS[fdp.ConsumeIntInRange(0, 1)])
    path = PATHS[fdp.ConsumeIntInRange(0, len(PATHS) - 1)]
    obs.on_request_headers({":method": "POST", ":path": path, ":authority": "h"}, {}, False, MS)
    obs.on_request_body(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 512)), True, 2 * MS)
    hdrs = {
        ":status": str(fdp.ConsumeIntInRange(100, 599)),
        "content-type": CTYPES[fdp.ConsumeIntInRange(0, 2)],
    }
    enc = ENCODINGS[fdp.ConsumeIntInRange(0, len(ENCODINGS) - 1)]
    if enc:
        hdrs["content-encoding"] = enc
    if fdp.ConsumeBool():
        hdrs["content-length"] = str(fdp.ConsumeIntInRange(0, 4096))
    obs.on_response_headers(hdrs, {}, False, 3 * MS)
    cut = fdp.ConsumeBool()
    cuts = _cuts(fdp)
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    if enc and body[:1] == b"C":  # sometimes a validly compressed body, so the decoders' insides get covered
        body = {
            "gzip": lambda b: zlib.compress(b, wbits=31),
            "deflate": zlib.compress,
            "br": brotli.compress,
        }.get(enc, lambda b: b)(body[1:])
    for i, chunk in enumerate(_splits(cuts, body)):
        obs.on_response_body(chunk, False, (4 + i) * MS)
    if cut:
        obs.finish(50 * MS, "aborted")
    else:
        obs.on_response_body(b"", True, 50 * MS)
        obs.finish(51 * MS)
    ailog.escaped(obs.ai_log())


def sse(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    cap = fdp.ConsumeIntInRange(1, 256)
    stream = fdp.ConsumeBytes(fdp.remaining_bytes())
    a, b = SSEFramer(cap), SSEFramer(cap)
    whole = [(e.data, e.event, e.id) for e in a.feed(stream) + a.finish()]
    parts = []
    for i in range(len(stream)):
        parts += b.feed(stream[i : i + 1])
        if len(b._buf) > cap + 1:
            raise AssertionError("framer buffer over its cap")
    parts += b.finish()
    if [(e.data, e.event, e.id) for e in parts] != whole:
        raise AssertionError("byte-by-byte framing differs from whole-stream framing")


def gjson_target(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    path = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(1, 40))
    raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = {"a": [1, {"b": "c"}], "choices": [{"delta": {"content": raw.decode("utf-8", "replace")}}]}
    try:
        p = gjson.compile_path(path)
    except gjson.PathError:
        return
    if isinstance(p._prog, gjson._Program):
        p._prog.run(doc)  # below get()'s safety net
    p.get(doc)


def config(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        parse_text(text, "fuzz.yaml")
    except ConfigError as exc:
        if not exc.errors or not all(e.startswith("fuzz.yaml") for e in exc.errors):
            raise AssertionError(f"error without the source name: {exc.errors}") from None


def decoders(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    enc = ["gzip", "deflate", "br"][fdp.ConsumeIntInRange(0, 2)]
    cuts = _cuts(fdp)
    raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    d = decoding.decoder_for(enc)
    assert d is not None
    try:
        for chunk in _splits(cuts, raw):
            for piece in d.feed(chunk):
                if len(piece) > 2 * decoding.PIECE:
                    raise AssertionError("decoded piece over the bound")
        list(d.flush())
    except (zlib.error, brotli.error):
        pass


TARGETS = {"observer": observer, "sse": sse, "gjson": gjson_target, "config": config, "decoders": decoders}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer flags] [corpus dir]")
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
