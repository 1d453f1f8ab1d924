"""Higress matchRules select per call on Envoy's route name, the request host and the upstream cluster."""

from __future__ import annotations

from pathlib import Path

from conftest import ai_log_for, post

CONFIG = """
defaultConfig:
  value_length_limit: 100
  attributes:
    - key: rule
      value_source: fixed_value
      value: default
      apply_to_log: true
matchRules:
  - _match_domain_: ["*.team-a.example"]
    config:
      attributes:
        - key: rule
          value_source: fixed_value
          value: domain
          apply_to_log: true
  - _match_route_: ["llm"]
    config:
      attributes:
        - key: rule
          value_source: fixed_value
          value: route
          apply_to_log: true
"""

CONFIG_SERVICE = """
defaultConfig:
  attributes:
    - {key: rule, value_source: fixed_value, value: default, apply_to_log: true}
matchRules:
  - _match_service_: ["llm_upstream"]
    config:
      attributes:
        - {key: rule, value_source: fixed_value, value: service, apply_to_log: true}
"""

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_match_rules_by_domain_and_route(stack_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    st = stack_factory(config_path=str(cfg))
    post(st.envoy_port, "/v1/chat/completions", CHAT, {"host": "api.team-a.example", "x-mock-chat-id": "m1"})
    post(st.envoy_port, "/v1/chat/completions", CHAT, {"host": "other.example", "x-mock-chat-id": "m2"})
    assert ai_log_for(st, "m1")["rule"] == "domain"  # first matching rule wins
    assert ai_log_for(st, "m2")["rule"] == "route"  # Envoy's route name is `llm`


def test_match_rule_by_upstream_cluster(stack_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG_SERVICE)
    st = stack_factory(config_path=str(cfg))
    post(st.envoy_port, "/v1/chat/completions", CHAT, {"x-mock-chat-id": "s1"})
    assert ai_log_for(st, "s1")["rule"] == "service"
