"""Every provider shape through the real Envoy: the access-log ai_log equals what the mock upstream sent.

One stack with the full Higress preset (`use_default_attributes`), so answer, reasoning and tool calls
are logged. Each case is checked against `mockllm.expected()`, the mock's own ground truth, and also
under transport quirks: the usage event split across TCP writes, CRLF line endings, gzip bodies.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ai_log_for, post

from gateway_stats.testing.mockllm import Truth, expected
from gateway_stats.testing.procs import Stack

CONFIG = """
use_default_attributes: true
value_length_limit: 100000
"""

PROMPT = [{"role": "user", "content": "Tell me about Envoy please"}]


def _request(provider: str, stream: bool, tools: bool) -> tuple[str, dict[str, Any]]:
    tool_defs: list[dict[str, Any]] = []
    if provider == "openai.chat":
        body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": PROMPT}
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        if tools:
            tool_defs = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
            body["tools"] = tool_defs
        return "/v1/chat/completions", body
    if provider == "openai.completions":
        body = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hello to Envoy"}
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        return "/v1/completions", body
    if provider == "openai.embeddings":
        return "/v1/embeddings", {"model": "text-embedding-3-small", "input": ["hello gateway", "bye"]}
    if provider == "openai.responses":
        body = {"model": "gpt-4.1", "input": "Tell me about Envoy", "stream": stream}
        if tools:
            body["tools"] = [{"type": "function", "name": "get_weather", "parameters": {}}]
        return "/v1/responses", body
    if provider == "anthropic.messages":
        body = {"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": PROMPT, "stream": stream}
        body["system"] = "Be brief."
        if tools:
            body["tools"] = [{"name": "get_weather", "input_schema": {"type": "object"}}]
        return "/v1/messages", body
    assert provider == "gemini"
    body = {"contents": [{"role": "user", "parts": [{"text": "Tell me about Envoy"}]}]}
    if tools:
        body["tools"] = [{"functionDeclarations": [{"name": "get_weather"}]}]
    if stream:
        return "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", body
    return "/v1beta/models/gemini-2.5-flash:generateContent", body


CASES: list[tuple[str, bool, bool]] = [
    ("openai.chat", False, False),
    ("openai.chat", True, False),
    ("openai.chat", False, True),
    ("openai.chat", True, True),
    ("openai.completions", False, False),
    ("openai.completions", True, False),
    ("openai.embeddings", False, False),
    ("openai.responses", False, False),
    ("openai.responses", True, False),
    ("openai.responses", True, True),
    ("anthropic.messages", False, False),
    ("anthropic.messages", True, False),
    ("anthropic.messages", False, True),
    ("anthropic.messages", True, True),
    ("gemini", False, False),
    ("gemini", True, False),
    ("gemini", True, True),
]

# Transport quirks, each applied to the stream cases (gzip to the non-stream ones too).
QUIRKS: dict[str, dict[str, str]] = {
    "plain": {},
    "split-usage": {"x-mock-split-usage": "4", "x-mock-split-pause-ms": "15"},
    "crlf": {"x-mock-crlf": "1"},
    "gzip": {"x-mock-encoding": "gzip"},
}


def _matrix() -> Iterator[Any]:
    for provider, stream, tools in CASES:
        for quirk in QUIRKS:
            if not stream and quirk in ("split-usage", "crlf"):
                continue
            if tools and quirk != "plain":
                continue
            name = f"{provider}-{'sse' if stream else 'json'}{'-tools' if tools else ''}-{quirk}"
            yield pytest.param(provider, stream, tools, quirk, id=name)


@pytest.fixture(scope="module")
def preset_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    d = tmp_path_factory.mktemp("providers")
    cfg = d / "config.yaml"
    cfg.write_text(CONFIG)
    s = Stack(d / "stack", config_path=str(cfg))
    s.workdir.mkdir(parents=True, exist_ok=True)
    try:
        s.start()
    except Exception:
        for p in s.procs.values():
            print(f"--- {p.name} ---\n{p.log_text()[-3000:]}")
        s.stop()
        raise
    yield s
    s.stop()


def _check_log(log: dict[str, Any], t: Truth) -> None:
    assert log["model"] == t.model
    assert log["response_type"] == ("stream" if t.stream else "normal")
    if t.usage_reported:
        assert log["input_token"] == t.input_tokens
        assert log["output_token"] == t.output_tokens
        assert log["total_token"] == t.total_tokens
    if t.provider != "openai.embeddings":
        assert log["chat_id"] == t.chat_id
    if t.answer:
        assert log["answer"] == t.answer
    if t.tool_calls:
        got = log["tool_calls"]
        assert isinstance(got, list) and len(got) == len(t.tool_calls)
        for g, want in zip(got, t.tool_calls, strict=True):
            assert g["function"]["name"] == want.name
            assert g["function"]["arguments"] == want.arguments  # no `{}` prefix (Higress bug)
            json.loads(g["function"]["arguments"])
            if t.provider != "gemini":  # Gemini function calls carry no id
                assert g["id"] == want.id
    else:
        assert log.get("tool_calls") is None
    if t.provider == "openai.embeddings":
        assert log["question"] is None  # embedding inputs are not questions (Higress)
    else:
        assert log["question"] is not None
    assert isinstance(log["llm_service_duration"], int)
    if t.stream:
        assert 0 <= log["llm_first_token_duration"] <= log["llm_service_duration"]


@pytest.mark.parametrize(("provider", "stream", "tools", "quirk"), list(_matrix()))
def test_provider_shape_ai_log_equals_mock_truth(
    preset_stack: Stack, provider: str, stream: bool, tools: bool, quirk: str
) -> None:
    path, body = _request(provider, stream, tools)
    marker = f"id-{provider}-{int(stream)}{int(tools)}-{quirk}"
    headers = {"x-mock-chat-id": marker, "x-mock-events": "6", **QUIRKS[quirk]}
    if tools:
        headers["x-mock-tools"] = "2"
    if provider in ("anthropic.messages", "openai.chat", "openai.responses"):
        headers["x-mock-cached-tokens"] = "3"
    headers["accept-encoding"] = "gzip" if quirk == "gzip" else "identity"
    status, resp_headers, raw = post(preset_stack.envoy_port, path, body, headers)
    assert status == 200, raw[:300]
    if quirk == "gzip":
        assert resp_headers.get("content-encoding") == "gzip"  # passed through still compressed
    t = expected(path, headers, body)
    if provider == "openai.embeddings":
        log = _wait_embedding_log(preset_stack, t)
    else:
        log = ai_log_for(preset_stack, marker)
    _check_log(log, t)
    if t.cached_tokens and t.usage_reported:
        assert log["cached_tokens"] == t.cached_tokens
    if provider == "anthropic.messages":
        assert log["system"] == "Be brief."


def _wait_embedding_log(stack: Stack, t: Truth) -> dict[str, Any]:
    from conftest import ai_logs, wait_for

    def find() -> dict[str, Any] | None:
        for d in ai_logs(stack):
            if d.get("model") == t.model and d.get("input_token") == t.input_tokens:
                return d
        return None

    return wait_for(find, 10, "embeddings ai_log")  # type: ignore[no-any-return]


@pytest.mark.parametrize("provider", ["openai.chat", "anthropic.messages", "openai.responses", "gemini"])
def test_client_disconnect_after_usage_keeps_tokens(preset_stack: Stack, provider: str) -> None:
    """The client hangs up once the usage-bearing event arrived, before the stream ends."""
    path, body = _request(provider, True, False)
    marker = f"cut-{provider}"
    headers = {
        "x-mock-chat-id": marker,
        "x-mock-events": "4",
        "x-mock-interval-ms": "400",
        "accept-encoding": "identity",
    }
    t = expected(path, headers, body)
    raw = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", preset_stack.envoy_port), timeout=15)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"content-length: {len(raw)}\r\n\r\n"
    s.sendall(head.encode() + raw)
    got = b""
    # The last usage-bearing event of each shape: it is followed by at least one more event.
    needle = {
        "openai.chat": b'"prompt_tokens"',
        "anthropic.messages": b"event: message_delta",
        "openai.responses": b"response.completed",
        "gemini": b'"finishReason"',
    }[provider]
    # Read until that event is complete (its blank line arrived), so Envoy has passed all of it on.
    while needle not in got or b"\n\n" not in got[got.index(needle) :]:
        chunk = s.recv(65536)
        assert chunk, "stream ended before the usage event"
        got += chunk
    s.close()
    log = ai_log_for(preset_stack, marker, timeout=30)
    assert log["model"] == t.model
    assert (log["input_token"], log["output_token"]) == (t.input_tokens, t.output_tokens)


def test_unterminated_final_event_still_counted(preset_stack: Stack) -> None:
    """Higress drops an unterminated final event; a complete JSON document there is still processed.

    Gemini's last event carries the final cumulative usage, so dropping it would lose output tokens.
    """
    path, body = _request("gemini", True, False)
    headers = {"x-mock-chat-id": "unterm", "x-mock-unterminated-final": "2", "accept-encoding": "identity"}
    status, _, raw = post(preset_stack.envoy_port, path, body, headers)
    assert status == 200 and not raw.endswith(b"\n")
    t = expected(path, headers, body)
    log = ai_log_for(preset_stack, "unterm")
    assert (log["input_token"], log["output_token"]) == (t.input_tokens, t.output_tokens)


def test_timings_against_mock_truth(preset_stack: Stack) -> None:
    """Durations sit inside what the mock did (slow first byte, paced events) and what the client saw."""
    import time

    path, body = _request("openai.chat", True, False)
    headers = {
        "x-mock-chat-id": "timing",
        "x-mock-first-byte-ms": "250",
        "x-mock-interval-ms": "40",
        "x-mock-events": "6",
        "accept-encoding": "identity",
    }
    t0 = time.monotonic()
    status, _, _ = post(preset_stack.envoy_port, path, body, headers)
    client_ms = (time.monotonic() - t0) * 1000
    assert status == 200
    log = ai_log_for(preset_stack, "timing")
    first_byte, first_content = log["llm_first_token_duration"], log["llm_first_content_duration"]
    total = log["llm_service_duration"]
    assert 250 <= first_byte <= first_content <= total <= client_ms
    # Events are paced 40 ms apart after the first byte: at least 6 gaps until the usage event.
    assert total - first_byte >= 6 * 40 - 5
