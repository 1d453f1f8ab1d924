"""End-user ids: keyed HMAC-SHA256, from a header or the body; the raw id stays out unless configured."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest
from driver import run_call

from gateway_stats.config import ConfigError, parse_config
from gateway_stats.config.analytics import parse_analytics
from gateway_stats.core.capture import user_hash, user_id_from_body

KEY = "k" * 32
ANSWER = b'{"id":"c1","model":"gpt-4o","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":1}}'


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GS_TEST_USER_KEY", KEY)


def config(**user: Any) -> Any:
    return parse_config({"gateway_stats": {"analytics": {"user": {"key_env": "GS_TEST_USER_KEY", **user}}}})


def test_hmac_sha256_known_value() -> None:
    expect = hmac.new(KEY.encode(), b"alice@example.com", hashlib.sha256).hexdigest()
    assert user_hash(KEY.encode(), "alice@example.com") == expect
    assert len(expect) == 64
    assert user_hash(b"another-key-of-32-bytes-length!!", "alice@example.com") != expect  # keyed


def test_user_id_sources_in_the_body() -> None:
    assert user_id_from_body({"user": "u-1"}) == "u-1"  # OpenAI (chat, completions, embeddings, responses)
    assert user_id_from_body({"metadata": {"user_id": "u-2"}}) == "u-2"  # Anthropic
    assert user_id_from_body({"user": 3, "metadata": "x"}) is None
    assert user_id_from_body({"user": "x" * 1000}) == "x" * 256


def test_body_user_is_hashed_and_dropped() -> None:
    call = run_call(
        config(), request={"model": "gpt-4o", "user": "alice@example.com", "messages": []}, response=ANSWER
    )
    rec = call.rec
    assert rec.user_hash == user_hash(KEY.encode(), "alice@example.com")
    assert rec.user_id is None
    assert "alice" not in repr(rec.__dict__ if hasattr(rec, "__dict__") else rec) and "alice" not in str(
        call.log
    )


def test_anthropic_metadata_user() -> None:
    call = run_call(
        config(),
        path="/v1/messages",
        request={"model": "claude", "metadata": {"user_id": "bob"}, "messages": [], "max_tokens": 5},
        response=b'{"id":"m1","type":"message","model":"claude","content":[],"usage":{"input_tokens":1}}',
    )
    assert call.rec.user_hash == user_hash(KEY.encode(), "bob")


def test_header_first_then_body_and_store_raw() -> None:
    req = {"model": "gpt-4o", "user": "from-body", "messages": []}
    call = run_call(
        config(header="X-End-User"), request=req, response=ANSWER, req_headers={"x-end-user": "from-hdr"}
    )
    assert call.rec.user_hash == user_hash(KEY.encode(), "from-hdr")
    call = run_call(config(header="x-end-user", body=False), request=req, response=ANSWER)
    assert call.rec.user_hash is None  # no header, body not consulted
    call = run_call(config(store_raw=True), request=req, response=ANSWER)
    assert call.rec.user_id == "from-body" and call.rec.user_hash == user_hash(KEY.encode(), "from-body")


def test_no_key_no_hash_and_no_raw_id() -> None:
    call = run_call(None, request={"model": "gpt-4o", "user": "alice", "messages": []}, response=ANSWER)
    assert call.rec.user_hash is None and call.rec.user_id is None


def test_key_from_a_file(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_text("file-key-0123456789abcdef\n")
    s = parse_analytics({"analytics": {"user": {"key_file": str(f)}}})
    assert s.user.key == b"file-key-0123456789abcdef"
    assert "file-key" not in repr(s)  # secrets stay out of repr (and so out of any log of the config)


def test_key_errors_name_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GS_SHORT", "short")
    cases = {
        "gateway_stats.analytics.user: one of key_env or key_file is required": {},
        "gateway_stats.analytics.user.key_env: environment variable GS_UNSET_X": {"key_env": "GS_UNSET_X"},
        "gateway_stats.analytics.user.key_env: the key must be at least 16 bytes": {"key_env": "GS_SHORT"},
        "gateway_stats.analytics.user.key_file: cannot read the user-hash key": {
            "key_file": str(tmp_path / "no")
        },
        "gateway_stats.analytics.user: set one of key_env or key_file, not both": {
            "key_env": "GS_TEST_USER_KEY",
            "key_file": "x",
        },
        "gateway_stats.analytics.user.header: not a valid header name": {
            "key_env": "GS_TEST_USER_KEY",
            "header": "a b",
        },
        "gateway_stats.analytics.user.hash: unknown field": {"key_env": "GS_TEST_USER_KEY", "hash": 1},
    }
    for msg, user in cases.items():
        with pytest.raises(ConfigError) as e:
            parse_config({"gateway_stats": {"analytics": {"user": user}}}, source="f.yaml")
        assert f"f.yaml: {msg}" in str(e.value), (msg, str(e.value))


def test_segmentation_headers_and_customer_user_id_hashed() -> None:
    cfg = parse_config(
        {
            "gateway_stats": {
                "analytics": {
                    "user": {"key_env": "GS_TEST_USER_KEY"},
                    "segmentation": {
                        "prompt_slug": "x-prompt",
                        "environment": "x-env",
                        "customer_id": "x-tenant",
                        "customer_user_id": "x-cust-user",
                        "external_reference_id": "x-ref",
                    },
                }
            }
        }
    )
    hdrs = {
        "x-prompt": "faq-v2",
        "x-env": "prod",
        "x-tenant": "acme",
        "x-cust-user": "carol",
        "x-ref": "ref-9",
    }
    call = run_call(cfg, request={"model": "m", "messages": []}, response=ANSWER, req_headers=hdrs)
    assert call.rec.segments == {
        "prompt_slug": "faq-v2",
        "environment": "prod",
        "customer_id": "acme",
        "customer_user_id": user_hash(KEY.encode(), "carol"),
        "external_reference_id": "ref-9",
    }
    with pytest.raises(ConfigError, match=r"segmentation\.customer_user_id: an end-user id is hashed"):
        parse_config({"gateway_stats": {"analytics": {"segmentation": {"customer_user_id": "x-u"}}}})
