"""The bytes every set-up sees: one realistic OpenAI chat request and its JSON or SSE answer.

Shared by the upstream (which sends them), the clients (which send the requests) and the driver
(which checks that each ai_log carries exactly these token counts), so "observed" means "observed
right", not merely "a line was written".
"""

from __future__ import annotations

import orjson

PATH = "/v1/chat/completions"
MODEL = "gpt-4o-mini"
RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"
PROMPT_TOKENS = 57
JSON_COMPLETION_TOKENS = 64

_MESSAGES = [
    {"role": "system", "content": "You are a concise assistant for a platform team running Envoy gateways."},
    {"role": "user", "content": "We proxy OpenAI traffic through Envoy. What does an ext_proc filter do?"},
    {"role": "assistant", "content": "It streams request and response phases to an external gRPC service."},
    {"role": "user", "content": "And what does that cost per request, roughly, on a small machine?"},
]

JSON_REQUEST = orjson.dumps({"model": MODEL, "messages": _MESSAGES, "temperature": 0.2, "user": "bench-user"})
SSE_REQUEST = orjson.dumps(
    {
        "model": MODEL,
        "messages": _MESSAGES,
        "temperature": 0.2,
        "user": "bench-user",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
)

_ANSWER = (
    "An ext_proc filter hands each phase of a request, its headers and body chunks and then the "
    "response headers and body chunks, to an external gRPC service over one bidirectional stream. The "
    "service may read or change them; an observer only reads. On a small machine the cost is dominated "
    "by the round trips and the per-message work of the service."
)
_USAGE_JSON = {
    "prompt_tokens": PROMPT_TOKENS,
    "completion_tokens": JSON_COMPLETION_TOKENS,
    "total_tokens": PROMPT_TOKENS + JSON_COMPLETION_TOKENS,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
JSON_RESPONSE = orjson.dumps(
    {
        "id": "chatcmpl-bench0001",
        "object": "chat.completion",
        "created": 1764000000,
        "model": RESPONSE_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": _ANSWER, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _USAGE_JSON,
        "service_tier": "default",
        "system_fingerprint": "fp_bench01",
    }
)

# A request may carry `x-bench-id: <ID_DIGITS digits>`: the JSON answer then has the id `chatcmpl-<id>`
# (same length, so the canned Content-Length holds), which the ai_log logs as chat_id. The bench joins
# the client's per-request latencies to the ai_log lines by it: latency of the calls that were observed.
ID_HEADER = b"x-bench-id"
ID_DIGITS = 9
JSON_ID = b"chatcmpl-bench0001"
CHAT_ID_KEY = b'\\"chat_id\\":\\"chatcmpl-'  # as it appears in an escaped ai_log line
assert JSON_ID in JSON_RESPONSE and len(JSON_ID) == len(b"chatcmpl-") + ID_DIGITS


def json_response_for(bench_id: bytes) -> bytes:
    return JSON_RESPONSE.replace(JSON_ID, b"chatcmpl-" + bench_id, 1)


_WORDS = _ANSWER.split()
_CHUNK_HEAD = (
    b'data: {"id":"chatcmpl-bench0002","object":"chat.completion.chunk","created":1764000000,'
    b'"model":"' + RESPONSE_MODEL.encode() + b'","service_tier":"default","system_fingerprint":"fp_bench01",'
)


def sse_events(n_content: int) -> list[bytes]:
    """Event templates (each with a `%d` for the upstream's send time in monotonic ns): n_content
    content deltas (the first also carries the role), the finish chunk, the usage chunk; [DONE] apart."""
    out: list[bytes] = []
    for i in range(n_content):
        delta: dict[str, object] = {"content": _WORDS[i % len(_WORDS)] + " "}
        if i == 0:
            delta = {"role": "assistant", "content": "", "refusal": None} | delta
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        out.append(_CHUNK_HEAD + b'"choices":' + orjson.dumps([choice]) + b',"sent_ns":%d}\n\n')
    fin = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    out.append(_CHUNK_HEAD + b'"choices":' + orjson.dumps([fin]) + b',"sent_ns":%d}\n\n')
    usage = {
        **_USAGE_JSON,
        "completion_tokens": n_content,
        "total_tokens": PROMPT_TOKENS + n_content,
    }
    out.append(_CHUNK_HEAD + b'"choices":[],"usage":' + orjson.dumps(usage) + b',"sent_ns":%d}\n\n')
    return out


SSE_DONE = b"data: [DONE]\n\n"
SENT_KEY = b'"sent_ns":'


def request_bytes(
    port: int, *, stream: bool, events: int = 0, interval_ms: float = 0.0, extra: str = ""
) -> bytes:
    body = SSE_REQUEST if stream else JSON_REQUEST
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: {'text/event-stream' if stream else 'application/json'}\r\n"
        "User-Agent: gateway-stats-bench/1\r\nAuthorization: Bearer sk-bench\r\n"
        f"x-session-id: bench-session\r\n{extra}"
    )
    if stream:
        head += f"x-bench-events: {events}\r\nx-bench-interval-ms: {interval_ms:g}\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def completion_tokens(stream: bool, events: int) -> int:
    return events if stream else JSON_COMPLETION_TOKENS
