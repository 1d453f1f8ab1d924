"""`as_separate_log_field` values get their own access-log field, in both log formats, as Higress does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import access_lines, post, wait_for

CONFIG = """
attributes:
  - key: question
    apply_to_log: true
  - key: tenant
    value_source: request_header
    value: x-tenant
    apply_to_log: true
    as_separate_log_field: true
  - key: req_meta
    value_source: request_body
    value: metadata
    apply_to_log: true
    as_separate_log_field: true
  - key: missing
    value_source: request_header
    value: x-not-sent
    apply_to_log: true
    as_separate_log_field: true
"""


@pytest.mark.parametrize("log_format", ["filter-state", "dynamic-metadata"])
def test_separate_fields_in_access_log(stack_factory, tmp_path: Path, log_format: str) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    st = stack_factory(config_path=str(cfg), log_format=log_format)
    tenant = 'acme "quoted" \\ ünïcode'
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"b": [1, 2], "a": "x"},
    }
    status, _, _ = post(
        st.envoy_port, "/v1/chat/completions", body, {"x-tenant": tenant.encode().decode("latin-1")}
    )  # UTF-8 bytes on the wire (http.client sends header values as latin-1)
    assert status == 200
    line = wait_for(lambda: next(iter(access_lines(st)), None), 10, "access-log line")
    assert set(line) == {"ai_log", "tenant", "req_meta", "missing"}
    assert line["tenant"] == tenant
    assert json.loads(line["req_meta"]) == {"a": "x", "b": [1, 2]}
    assert line["missing"] in ("", "-")  # unresolved: empty (Envoy prints "-" for absent metadata)
    log = json.loads(line["ai_log"])
    # Separate fields live outside ai_log; ordinary ones inside.
    assert "tenant" not in log and "req_meta" not in log
    assert log["question"] == "hi"


def test_envoy_config_takes_separate_fields_from_config(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG + "gateway_stats:\n  metadata_namespace: my_ns\n")
    out = subprocess.run(
        [sys.executable, "-m", "gateway_stats", "envoy-config", "--config", str(cfg)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"tenant":"%DYNAMIC_METADATA(my_ns:tenant)%"' in out and "lua" not in out.lower()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway_stats",
            "envoy-config",
            "--config",
            str(cfg),
            "--log-format",
            "filter-state",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"tenant":"%FILTER_STATE(wasm.tenant:PLAIN)%"' in out
    assert '"req_meta":"%FILTER_STATE(wasm.req_meta:PLAIN)%"' in out
    assert 'local NS = "my_ns"' in str(yaml.safe_load(out))  # the Lua copy reads that namespace
    bad = tmp_path / "bad.yaml"
    bad.write_text("attributes:\n  - key: x\n    value_source: nope\n")
    r = subprocess.run(
        [sys.executable, "-m", "gateway_stats", "envoy-config", "--config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "value_source" in r.stderr
