"""The config model: shapes, presets, inheritance, selection, strict validation and hot reload."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from higress_readme import README_A  # the Higress README's first example config

from gateway_stats.config import (
    BUILTIN_KEYS,
    DEFAULT_PATH_SUFFIXES,
    VALUE_SOURCES,
    Attribute,
    Config,
    ConfigError,
    Extensions,
    ExtraLabel,
    Limits,
    MetricsConfig,
    OverloadConfig,
    PluginConfig,
    TracingConfig,
    default_config,
    load_config,
    parse_config,
)
from gateway_stats.config.store import ConfigStore, with_environment

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "config").glob("*.yaml"))

FULL_KEYS = [
    "messages",
    "question",
    "system",
    "answer",
    "reasoning",
    "tool_calls",
    "reasoning_tokens",
    "cached_tokens",
    "input_token_details",
    "output_token_details",
]
LIGHT_KEYS = ["reasoning_tokens", "cached_tokens", "input_token_details", "output_token_details"]


def errors_of(data: object, source: str = "config.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source)
    return info.value.errors


def one_error(data: object) -> str:
    errs = errors_of(data)
    assert len(errs) == 1, errs
    return errs[0]


def keys(plugin: PluginConfig) -> list[str]:
    return [a.key for a in plugin.attributes]


# ------------------------------------------------------------------------------------------ examples


def test_example_configs_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"gateway-stats.yaml", "higress-wasmplugin.yaml", "minimal.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_loads(path: Path) -> None:
    cfg = load_config(str(path))
    assert cfg.source == str(path)
    assert cfg.default.enabled


def test_demo_config_content() -> None:
    cfg = load_config(str(REPO / "config" / "gateway-stats.yaml"))
    d = cfg.default
    assert d.use_default_attributes
    assert keys(d)[: len(FULL_KEYS)] == FULL_KEYS
    sources = {a.value_source for a in d.attributes}
    assert {"request_header", "response_streaming_body"} <= sources
    ua = next(a for a in d.attributes if a.key == "user_agent")
    assert ua.value == "user-agent" and ua.apply_to_log
    fr = next(a for a in d.attributes if a.value_source == "response_streaming_body")
    assert fr.rule == "replace"
    assert d.value_length_limit == 8000
    assert d.session_id_header == "x-session-id"
    assert cfg.extensions.metrics.extra_labels == (
        ExtraLabel(
            name="client",
            request_header="x-client-name",
            families=("gen_ai_client_token_usage", "gateway_stats_calls_total"),
        ),
    )


def test_minimal_config_content() -> None:
    cfg = load_config(str(REPO / "config" / "minimal.yaml"))
    assert keys(cfg.default) == FULL_KEYS
    assert cfg.extensions == Extensions()


def test_wasmplugin_example_content() -> None:
    cfg = load_config(str(REPO / "config" / "higress-wasmplugin.yaml"))
    assert keys(cfg.default) == ["question", "answer", "answer"]
    openai = cfg.select("ai-route-openai.internal", "api.example.com", "")
    assert keys(openai) == ["question", "answer", "answer", "project"]
    assert not cfg.select("ai-route-healthcheck.internal", "x", "").enabled
    anthropic = cfg.select("other", "eu.anthropic.example.com:443", "")
    assert anthropic.use_default_attributes
    assert cfg.select("other", "example.org", "") is cfg.default
    assert cfg.extensions.metrics.profiles == ("higress",)


def test_higress_readme_example_a() -> None:
    cfg = parse_config(README_A)
    assert cfg.default.attributes == (
        Attribute("question", "request_body", "messages.@reverse.0.content", apply_to_log=True),
        Attribute(
            "answer", "response_streaming_body", "choices.0.delta.content", rule="append", apply_to_log=True
        ),
        Attribute("answer", "response_body", "choices.0.message.content", apply_to_log=True),
    )
    assert cfg.default.value_length_limit == 32000
    assert cfg.default.enable_path_suffixes == ()


def test_higress_readme_example_b() -> None:
    cfg = parse_config(yaml.safe_load("use_default_attributes: true\n"))
    assert keys(cfg.default) == FULL_KEYS


# ------------------------------------------------------------------------------------------ defaults


def test_default_config_is_higress_default() -> None:
    cfg = default_config()
    d = cfg.default
    assert cfg.source == "<default>"
    assert cfg.match_rules == ()
    assert d.attributes == ()
    assert not d.use_default_attributes and not d.use_default_response_attributes
    assert d.value_length_limit == 32000
    assert d.disable_openai_usage is False
    assert d.enable_path_suffixes == () and d.enable_content_types == ()
    assert d.session_id_header is None and d.enabled
    assert cfg.extensions == Extensions()
    assert parse_config({}).default == d


def test_extension_defaults() -> None:
    ext = Extensions()
    assert ext.consumer_header == "x-mse-consumer"
    assert ext.metadata_namespace == "gateway_stats"
    assert ext.limits == Limits(4 << 20, 1 << 20, 1 << 20, 8 << 20)
    assert ext.metrics == MetricsConfig(("higress", "genai"), 2000, 128, (), False)
    assert ext.tracing == TracingConfig(
        None, False, "gateway-stats"
    )  # enabled: not set (the environment decides)
    assert ext.ai_log_file is None


def test_dataclasses_are_frozen() -> None:
    cfg = default_config()
    with pytest.raises(AttributeError):
        cfg.default.value_length_limit = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        Attribute("k", "fixed_value").key = "x"  # type: ignore[misc]


def test_value_sources_constant() -> None:
    assert VALUE_SOURCES == (
        "fixed_value",
        "request_header",
        "request_body",
        "response_header",
        "response_body",
        "response_streaming_body",
    )
    assert set(FULL_KEYS) == set(BUILTIN_KEYS)


# ------------------------------------------------------------------------------------------- presets


def test_full_preset() -> None:
    d = parse_config({"use_default_attributes": True}).default
    assert keys(d) == FULL_KEYS
    assert all(a.apply_to_log for a in d.attributes)
    by_key = {a.key: a for a in d.attributes}
    assert by_key["messages"].value_source == "request_body" and by_key["messages"].value == "messages"
    assert by_key["answer"].rule == "append" and by_key["reasoning"].rule == "append"
    assert by_key["question"].value_source == "" and by_key["question"].rule == ""
    assert d.value_length_limit == 10485760
    assert d.enable_path_suffixes == DEFAULT_PATH_SUFFIXES
    assert {"/completions", "/messages", "/responses", "/embeddings"} <= set(DEFAULT_PATH_SUFFIXES)


def test_light_preset() -> None:
    d = parse_config({"use_default_response_attributes": True}).default
    assert keys(d) == LIGHT_KEYS
    assert d.value_length_limit == 4000
    assert d.enable_path_suffixes == ()


def test_both_presets_full_wins() -> None:
    d = parse_config({"use_default_attributes": True, "use_default_response_attributes": True}).default
    assert keys(d) == FULL_KEYS
    assert d.value_length_limit == 10485760


def test_preset_explicit_fields_win() -> None:
    d = parse_config(
        {"use_default_attributes": True, "value_length_limit": 100, "enable_path_suffixes": ["/x"]}
    ).default
    assert d.value_length_limit == 100
    assert d.enable_path_suffixes == ("/x",)
    d = parse_config({"use_default_attributes": True, "enable_path_suffixes": []}).default
    assert d.enable_path_suffixes == ()
    d = parse_config({"use_default_response_attributes": True, "value_length_limit": 7}).default
    assert d.value_length_limit == 7


def test_custom_attributes_add_to_preset() -> None:
    d = parse_config(
        {
            "use_default_attributes": True,
            "attributes": [
                {
                    "key": "consumer",
                    "value_source": "request_header",
                    "value": "X-Mse-Consumer",
                    "apply_to_log": True,
                },
            ],
        }
    ).default
    assert keys(d) == [*FULL_KEYS, "consumer"]
    assert d.attributes[-1].value == "x-mse-consumer"  # header names are lower-cased


def test_custom_attribute_replaces_preset_in_place() -> None:
    d = parse_config(
        {
            "use_default_response_attributes": True,
            "attributes": [
                {"key": "extra", "value_source": "fixed_value", "value": "1"},
                {"key": "cached_tokens", "value_source": "response_body", "value": "usage.cached"},
            ],
        }
    ).default
    assert keys(d) == [
        "reasoning_tokens",
        "cached_tokens",
        "input_token_details",
        "output_token_details",
        "extra",
    ]
    assert d.attributes[1].value == "usage.cached"


def test_custom_pair_replaces_preset_answer_in_place() -> None:
    d = parse_config({"use_default_attributes": True, **README_A}).default
    assert keys(d) == [
        "messages",
        "question",
        "system",
        "answer",
        "answer",
        "reasoning",
        "tool_calls",
        "reasoning_tokens",
        "cached_tokens",
        "input_token_details",
        "output_token_details",
    ]
    assert d.attributes[1].value == "messages.@reverse.0.content"
    assert [a.value_source for a in d.attributes[3:5]] == ["response_streaming_body", "response_body"]


def test_duplicate_keys_within_one_list_are_kept() -> None:
    assert keys(parse_config(README_A).default) == ["question", "answer", "answer"]


def test_builtin_answer_without_rule_is_left_empty() -> None:
    d = parse_config({"attributes": [{"key": "answer", "apply_to_log": True}]}).default
    assert d.attributes == (Attribute("answer", "", apply_to_log=True),)


def test_attribute_all_fields() -> None:
    a = parse_config(
        {
            "attributes": [
                {
                    "key": "k",
                    "value_source": "response_streaming_body",
                    "value": "a.b",
                    "default_value": {"x": [1]},
                    "rule": "first",
                    "apply_to_log": True,
                    "apply_to_span": True,
                    "trace_span_key": "span.k",
                    "as_separate_log_field": True,
                }
            ]
        }
    ).default.attributes[0]
    assert a == Attribute(
        "k", "response_streaming_body", "a.b", {"x": [1]}, "first", True, True, "span.k", True
    )


# --------------------------------------------------------------------------------------- inheritance


def doc(default: dict[str, Any], *rules: dict[str, Any]) -> Config:
    return parse_config({"defaultConfig": default, "matchRules": list(rules)})


def test_rule_inherits_default_fields() -> None:
    cfg = doc(
        {
            "value_length_limit": 50,
            "session_id_header": "x-s",
            "enable_content_types": ["JSON"],
            "disable_openai_usage": True,
        },
        {"_match_route_": ["r"], "config": {"value_length_limit": 60}},
    )
    r = cfg.match_rules[0].config
    assert r.value_length_limit == 60
    assert r.session_id_header == "x-s"
    assert r.enable_content_types == ("json",)
    assert r.disable_openai_usage is True
    assert cfg.default.value_length_limit == 50


def test_rule_attributes_are_default_plus_rule_later_key_wins() -> None:
    cfg = doc(
        {
            "attributes": [
                {"key": "a", "value_source": "fixed_value", "value": "1"},
                {"key": "b", "value_source": "fixed_value", "value": "2"},
            ]
        },
        {
            "_match_route_": ["r"],
            "config": {
                "attributes": [
                    {"key": "c", "value_source": "fixed_value", "value": "3"},
                    {"key": "a", "value_source": "fixed_value", "value": "rule"},
                ]
            },
        },
    )
    r = cfg.match_rules[0].config
    assert [(a.key, a.value) for a in r.attributes] == [("a", "rule"), ("b", "2"), ("c", "3")]


def test_rule_inherits_preset_and_its_derived_defaults() -> None:
    cfg = doc(
        {"use_default_attributes": True},
        {
            "_match_route_": ["r1"],
            "config": {"attributes": [{"key": "x", "value_source": "request_header", "value": "x"}]},
        },
        {"_match_route_": ["r2"], "config": {"use_default_attributes": False}},
        {"_match_route_": ["r3"]},
    )
    r1, r2, r3 = (m.config for m in cfg.match_rules)
    assert keys(r1) == [*FULL_KEYS, "x"]
    assert r1.value_length_limit == 10485760 and r1.enable_path_suffixes == DEFAULT_PATH_SUFFIXES
    assert keys(r2) == [] and r2.value_length_limit == 32000 and r2.enable_path_suffixes == ()
    assert r3 == cfg.default


def test_rule_explicit_value_overrides_preset_default() -> None:
    cfg = doc(
        {"use_default_attributes": True, "value_length_limit": 10},
        {
            "_match_route_": ["r"],
            "config": {"use_default_response_attributes": True, "use_default_attributes": False},
        },
    )
    r = cfg.match_rules[0].config
    assert keys(r) == LIGHT_KEYS
    assert r.value_length_limit == 10  # explicit in defaultConfig: inherited


def test_rule_config_may_be_omitted_or_null() -> None:
    cfg = doc(
        {"value_length_limit": 9},
        {"_match_domain_": ["a.com"]},
        {"_match_domain_": ["b.com"], "config": None},
    )
    assert all(m.config.value_length_limit == 9 for m in cfg.match_rules)


# ---------------------------------------------------------------------------------------- selection


def rules_cfg(*rules: dict[str, Any]) -> Config:
    return parse_config(
        {
            "defaultConfig": {},
            "matchRules": [
                {
                    **r,
                    "config": {
                        "attributes": [{"key": "which", "value_source": "fixed_value", "value": str(i)}]
                    },
                }
                for i, r in enumerate(rules)
            ],
        }
    )


def which(cfg: Config, route: str = "", host: str = "", cluster: str = "") -> str | None:
    plugin = cfg.select(route, host, cluster)
    return plugin.attributes[0].value if plugin.attributes else None


def test_select_route_exact() -> None:
    cfg = rules_cfg({"_match_route_": ["ai-route-a.internal", "b"]})
    assert which(cfg, route="ai-route-a.internal") == "0"
    assert which(cfg, route="b") == "0"
    assert which(cfg, route="ai-route-a") is None
    assert cfg.select("nope", "", "") is cfg.default


def test_select_domain_exact_with_and_without_port() -> None:
    cfg = rules_cfg({"_match_domain_": ["API.example.com"]})
    assert cfg.match_rules[0].domains == ("api.example.com",)
    assert which(cfg, host="api.example.com") == "0"
    assert which(cfg, host="Api.Example.com:8443") == "0"
    assert which(cfg, host="x.api.example.com") is None


def test_select_domain_wildcard() -> None:
    cfg = rules_cfg({"_match_domain_": ["*.example.com"]})
    assert which(cfg, host="a.example.com") == "0"
    assert which(cfg, host="a.b.example.com:80") == "0"
    assert which(cfg, host="example.com") is None
    assert which(cfg, host="badexample.com") is None


def test_select_domain_with_port_and_ipv6() -> None:
    cfg = rules_cfg({"_match_domain_": ["api.example.com:8080"]}, {"_match_domain_": ["[::1]"]})
    assert which(cfg, host="api.example.com:8080") == "0"
    assert which(cfg, host="api.example.com:9090") is None
    assert which(cfg, host="[::1]:8080") == "1"


def test_select_service_exact_cluster_name() -> None:
    cfg = rules_cfg({"_match_service_": ["llm-openai"]})
    assert which(cfg, cluster="llm-openai") == "0"
    assert which(cfg, cluster="llm-openai-2") is None


def test_select_service_higress_cluster_names() -> None:
    cfg = rules_cfg(
        {"_match_service_": ["qwen.default.svc.cluster.local"]},
        {"_match_service_": ["openai.llm.svc.cluster.local:443"]},
        {"_match_service_": ["outbound|80||exact.svc"]},
    )
    assert which(cfg, cluster="outbound|80||qwen.default.svc.cluster.local") == "0"
    assert which(cfg, cluster="outbound|8080||qwen.default.svc.cluster.local") == "0"
    assert which(cfg, cluster="outbound|443||openai.llm.svc.cluster.local") == "1"
    assert which(cfg, cluster="outbound|80||openai.llm.svc.cluster.local") is None
    assert which(cfg, cluster="outbound|80||exact.svc") == "2"
    assert which(cfg, cluster="other|80||qwen.default.svc.cluster.local") is None


def test_select_first_match_wins_and_selectors_combine() -> None:
    cfg = rules_cfg({"_match_route_": ["r"], "_match_service_": ["s"]}, {"_match_route_": ["r"]})
    assert which(cfg, route="r", cluster="s") == "0"
    assert which(cfg, route="r", cluster="t") == "1"


def test_select_crd_spelling_and_config_disable() -> None:
    cfg = parse_config(
        {
            "defaultConfig": {"use_default_attributes": True},
            "matchRules": [
                {"ingress": ["default/foo"], "configDisable": True},
                {"domain": ["*.off.com"], "configDisable": True, "config": {"value_length_limit": 5}},
                {"service": ["svc.ns.svc.cluster.local"], "configDisable": False},
            ],
        }
    )
    off = cfg.select("default/foo", "", "")
    assert off.enabled is False
    assert off.attributes == () and off.disable_openai_usage
    assert not off.path_enabled("/v1/chat/completions")
    assert not off.content_type_enabled("application/json")
    assert not cfg.select("x", "a.off.com", "").enabled
    on = cfg.select("x", "", "outbound|80||svc.ns.svc.cluster.local")
    assert on.enabled and keys(on) == FULL_KEYS


def test_default_config_disable() -> None:
    cfg = parse_config(
        {
            "defaultConfigDisable": True,
            "defaultConfig": {"value_length_limit": 5},
            "matchRules": [{"_match_route_": ["r"]}],
        }
    )
    assert cfg.default.enabled is False
    assert cfg.select("r", "", "").enabled
    assert cfg.select("r", "", "").value_length_limit == 5


def test_path_enabled() -> None:
    d = parse_config({"enable_path_suffixes": ["/completions", "/messages"]}).default
    assert d.path_enabled("/v1/chat/completions")
    assert d.path_enabled("/v1/chat/completions?x=/y")
    assert not d.path_enabled("/v1/models")
    assert not d.path_enabled("/v1/models?p=/completions")
    assert parse_config({"enable_path_suffixes": ["*"]}).default.path_enabled("/anything")
    assert parse_config({}).default.path_enabled("/anything")
    gem = parse_config({"use_default_attributes": True}).default
    assert gem.path_enabled("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
    assert gem.path_enabled("/v1/responses") and gem.path_enabled("/v1/embeddings")


def test_content_type_enabled() -> None:
    d = parse_config({"enable_content_types": ["text/event-stream", "Application/JSON"]}).default
    assert d.content_type_enabled("text/event-stream; charset=utf-8")
    assert d.content_type_enabled("application/json")
    assert d.content_type_enabled("Application/Json")
    assert not d.content_type_enabled("text/html")
    assert parse_config({"enable_content_types": ["*"]}).default.content_type_enabled("text/html")
    assert parse_config({}).default.content_type_enabled("")


# ------------------------------------------------------------------------------------------- shapes


def test_bare_shape_with_extensions() -> None:
    cfg = parse_config(
        {
            "use_default_response_attributes": True,
            "gateway_stats": {
                "consumer_header": "X-Consumer",
                "metadata_namespace": "ai",
                "ai_log_file": "-",
                "limits": {
                    "max_request_body_bytes": 10,
                    "max_event_bytes": 11,
                    "max_attribute_bytes": 12,
                    "max_response_body_bytes": 13,
                },
                "metrics": {
                    "profiles": ["genai"],
                    "max_series_per_metric": 5,
                    "max_label_value_length": 6,
                    "gen_ai_server_aliases": True,
                    "extra_labels": [
                        {"name": "team", "request_header": "X-Team"},
                        {
                            "name": "q",
                            "attribute": "cached_tokens",
                            "families": ["route_upstream_model_consumer_metric_input_token"],
                        },
                    ],
                },
                "tracing": {"enabled": True, "capture_content": True, "service_name": "gw"},
            },
        }
    )
    ext = cfg.extensions
    assert ext.consumer_header == "x-consumer" and ext.metadata_namespace == "ai" and ext.ai_log_file == "-"
    assert ext.limits == Limits(10, 11, 12, 13)
    assert ext.metrics == MetricsConfig(
        ("genai",),
        5,
        6,
        (
            ExtraLabel("team", request_header="x-team"),
            ExtraLabel(
                "q", attribute="cached_tokens", families=("route_upstream_model_consumer_metric_input_token",)
            ),
        ),
        True,
    )
    assert ext.tracing == TracingConfig(True, True, "gw")


def test_partial_extensions_keep_defaults() -> None:
    ext = parse_config(
        {"gateway_stats": {"limits": {"max_event_bytes": 5}, "tracing": {"enabled": True}}}
    ).extensions
    assert ext.limits == Limits(max_event_bytes=5)
    assert ext.tracing == TracingConfig(enabled=True)
    assert ext.metrics == MetricsConfig()


def test_tracing_enabled_unset_is_not_false() -> None:
    assert parse_config({}).extensions.tracing.enabled is None
    assert (
        parse_config({"gateway_stats": {"tracing": {"capture_content": True}}}).extensions.tracing.enabled
        is None
    )
    assert (
        parse_config({"gateway_stats": {"tracing": {"enabled": False}}}).extensions.tracing.enabled is False
    )
    assert parse_config({"gateway_stats": {"tracing": {"enabled": True}}}).extensions.tracing.enabled is True


EXPORTER = {"OTEL_TRACES_EXPORTER": "otlp"}
ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
TRACES_ENDPOINT = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}
OFF = {"OTEL_SDK_DISABLED": "true"}


@pytest.mark.parametrize(
    ("enabled", "environ", "on"),
    [
        (None, {}, False),  # nothing asks for spans
        (None, EXPORTER, True),  # the standard variables alone switch tracing on
        (None, {"OTEL_TRACES_EXPORTER": "console"}, True),
        (None, {"OTEL_TRACES_EXPORTER": "none"}, False),
        (None, {"OTEL_TRACES_EXPORTER": " "}, False),  # empty: not set
        (None, ENDPOINT, True),
        (None, TRACES_ENDPOINT, True),
        (None, {**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, False),  # an explicit `none` wins
        (False, {**EXPORTER, **ENDPOINT}, False),  # the config's `enabled: false` wins over the variables
        (True, {}, True),
        (True, {"OTEL_SDK_DISABLED": "TRUE"}, False),  # OTEL_SDK_DISABLED turns everything off
        (None, {**EXPORTER, **OFF}, False),
        (None, {**EXPORTER, "OTEL_SDK_DISABLED": "false"}, True),
    ],
)
def test_tracing_from_the_environment(enabled: bool | None, environ: dict[str, str], on: bool) -> None:
    tr = TracingConfig(enabled=enabled, capture_content=True).resolved(environ)
    assert tr.enabled is on and tr.capture_content


def test_config_store_resolves_tracing_from_the_environment(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("use_default_attributes: true\n")
    assert ConfigStore(str(p), environ=ENDPOINT).current.extensions.tracing.enabled is True
    assert ConfigStore(None, environ=EXPORTER).current.extensions.tracing.enabled is True
    assert ConfigStore(str(p), environ={}).current.extensions.tracing.enabled is False
    seen: list[Config] = []
    store = ConfigStore(str(p), on_change=seen.append, environ=EXPORTER)
    write(p, "gateway_stats: {tracing: {enabled: false}}\n")
    assert store.check() and store.current.extensions.tracing.enabled is False  # reloads resolve too
    write(p, "gateway_stats: {tracing: {capture_content: true}}\n")
    assert store.check() and seen[-1].extensions.tracing.enabled is True


def test_higress_inline_rules_shape() -> None:
    cfg = parse_config(
        {
            "value_length_limit": 7,
            "_rules_": [
                {"_match_route_": ["r"], "use_default_response_attributes": True},
                {"_match_domain_": ["*.x.com"], "value_length_limit": 8},
            ],
        }
    )
    assert cfg.default.value_length_limit == 7
    r0, r1 = (m.config for m in cfg.match_rules)
    assert keys(r0) == LIGHT_KEYS and r0.value_length_limit == 7
    assert r1.value_length_limit == 8
    assert cfg.match_rules[1].domains == ("*.x.com",)


K8S: dict[str, Any] = {
    "apiVersion": "extensions.higress.io/v1alpha1",
    "kind": "WasmPlugin",
    "metadata": {"name": "ai-statistics", "namespace": "higress-system"},
    "spec": {
        "url": "oci://example/ai-statistics:1.0.0",
        "phase": "UNSPECIFIED_PHASE",
        "priority": 200,
        "imagePullPolicy": "Always",
        "defaultConfigDisable": False,
        "failStrategy": "FAIL_OPEN",
        "defaultConfig": README_A,
        "matchRules": [{"_match_route_": ["r"], "config": {"value_length_limit": 3}}],
    },
}


def test_k8s_shape() -> None:
    cfg = parse_config(K8S)
    assert keys(cfg.default) == ["question", "answer", "answer"]
    assert cfg.select("r", "", "").value_length_limit == 3
    assert keys(cfg.select("r", "", "")) == ["question", "answer", "answer"]


def test_k8s_extensions_top_level_or_under_spec() -> None:
    top = parse_config({**K8S, "gateway_stats": {"consumer_header": "x-a"}})
    assert top.extensions.consumer_header == "x-a"
    under = parse_config({**K8S, "spec": {**K8S["spec"], "gateway_stats": {"consumer_header": "x-b"}}})
    assert under.extensions.consumer_header == "x-b"
    both = {**K8S, "gateway_stats": {}, "spec": {**K8S["spec"], "gateway_stats": {"consumer_header": "x"}}}
    assert "given both at the top level and under spec" in one_error(both)


def test_k8s_under_spec_error_path() -> None:
    bad = {**K8S, "spec": {**K8S["spec"], "gateway_stats": {"limits": {"max_event_bytes": 0}}}}
    assert one_error(bad) == "config.yaml: spec.gateway_stats.limits.max_event_bytes: must be >= 1, got 0"


def test_k8s_plugin_config_shape() -> None:
    cfg = parse_config(
        {
            "apiVersion": "extensions.istio.io/v1alpha1",
            "kind": "WasmPlugin",
            "spec": {
                "url": "oci://x",
                "pluginConfig": {
                    "use_default_attributes": True,
                    "_rules_": [{"_match_route_": ["r"], "value_length_limit": 4}],
                },
            },
        }
    )
    assert keys(cfg.default) == FULL_KEYS
    assert cfg.select("r", "", "").value_length_limit == 4


def test_k8s_wrong_kind_and_api_version() -> None:
    errs = errors_of({"apiVersion": "v1", "kind": "ConfigMap", "spec": {}})
    assert any("kind: expected 'WasmPlugin'" in e for e in errs)
    assert any("apiVersion: expected extensions.higress.io/v1alpha1" in e for e in errs)


def test_json_content_detected(tmp_path: Path) -> None:
    p = tmp_path / "ai.conf"
    p.write_text(json.dumps({"defaultConfig": README_A}))
    assert keys(load_config(str(p)).default) == ["question", "answer", "answer"]
    p.write_text("{use_default_attributes: true}")  # YAML flow mapping, not JSON
    assert keys(load_config(str(p)).default) == FULL_KEYS


# ------------------------------------------------------------------------------------------- errors


def test_error_message_format_matches_contract() -> None:
    err = one_error(
        {
            "attributes": [
                {"key": "a", "value_source": "fixed_value"},
                {"key": "b", "value_source": "fixed_value"},
                {"key": "c", "value_source": "response_streaming_body", "value": "x", "rule": "last"},
            ]
        }
    )
    assert (
        err
        == "config.yaml: attributes[2].rule: unknown value 'last' (expected one of: first, replace, append)"
    )


def test_error_names_file_when_loaded(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("value_length_limit: nope\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(p))
    assert str(info.value) == f"{p}: value_length_limit: expected an integer, got string 'nope'"


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"atributes": []}, "atributes"),
        (
            {"attributes": [{"key": "a", "value_source": "fixed_value", "aply_to_log": True}]},
            "attributes[0].aply_to_log",
        ),
        ({"defaultConfig": {"valuelengthlimit": 1}}, "defaultConfig.valuelengthlimit"),
        (
            {"defaultConfig": {}, "matchRules": [{"_match_route_": ["r"], "conifg": {}}]},
            "matchRules[0].conifg",
        ),
        (
            {"matchRules": [{"_match_route_": ["r"], "config": {"use_default_atributes": True}}]},
            "matchRules[0].config.use_default_atributes",
        ),
        (
            {
                "matchRules": [
                    {},
                    {
                        "_match_route_": ["r"],
                        "config": {"attributes": [{"key": "k", "value_source": "fixed_value", "vaule": "x"}]},
                    },
                ]
            },
            "matchRules[1].config.attributes[0].vaule",
        ),
        ({"defaultConfig": {}, "defaultConfigDisabled": True}, "defaultConfigDisabled"),
        ({**K8S, "spec": {**K8S["spec"], "defaultconfig": {}}}, "spec.defaultconfig"),
        ({**K8S, "metdata": {}}, "metdata"),
        ({"_rules_": [{"_match_route_": ["r"], "enable_path_suffix": []}]}, "_rules_[0].enable_path_suffix"),
        ({"gateway_stats": {"consumer": "x"}}, "gateway_stats.consumer"),
        ({"gateway_stats": {"limits": {"max_event_byte": 1}}}, "gateway_stats.limits.max_event_byte"),
        ({"gateway_stats": {"metrics": {"profile": ["genai"]}}}, "gateway_stats.metrics.profile"),
        (
            {
                "gateway_stats": {
                    "metrics": {"extra_labels": [{"name": "a", "request_header": "x", "header": "y"}]}
                }
            },
            "gateway_stats.metrics.extra_labels[0].header",
        ),
        ({"gateway_stats": {"tracing": {"enable": True}}}, "gateway_stats.tracing.enable"),
    ],
)
def test_unknown_field_at_every_level(data: dict[str, Any], path: str) -> None:
    errs = [e for e in errors_of(data) if "unknown field" in e]
    assert len(errs) == 1, errors_of(data)
    assert errs[0].startswith(f"config.yaml: {path}: unknown field")


def test_unknown_field_suggestions() -> None:
    err = one_error({"attributes": [{"key": "a", "value_source": "fixed_value", "aply_to_log": True}]})
    assert err.endswith("unknown field (did you mean 'apply_to_log'?)")
    err = one_error({"useDefaultAttributes": True})
    assert "did you mean 'use_default_attributes'?" in err
    err = one_error({"zzz": 1})
    assert "unknown field (known fields: attributes, use_default_attributes" in err


def test_misplaced_fields_get_hints() -> None:
    err = one_error({"defaultConfig": {"gateway_stats": {}}})
    assert err == (
        "config.yaml: defaultConfig.gateway_stats: unknown field "
        "(gateway_stats belongs at the top level of the document)"
    )
    err = one_error({"defaultConfig": {}, "attributes": []})
    assert "attributes: unknown field (Higress plugin fields belong under defaultConfig" in err
    err = one_error({**K8S, "spec": {**K8S["spec"], "attributes": []}})
    assert "spec.attributes: unknown field (Higress plugin fields belong under spec.defaultConfig)" in err


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"use_default_attributes": "true"},
            "use_default_attributes: expected a boolean (true or false), got string 'true'",
        ),
        (
            {"disable_openai_usage": 1},
            "disable_openai_usage: expected a boolean (true or false), got integer 1",
        ),
        ({"value_length_limit": True}, "value_length_limit: expected an integer, got boolean True"),
        ({"value_length_limit": 1.5}, "value_length_limit: expected an integer, got number 1.5"),
        ({"value_length_limit": 0}, "value_length_limit: must be >= 1, got 0"),
        (
            {"enable_path_suffixes": "/completions"},
            "enable_path_suffixes: expected a list of strings, got string '/completions'",
        ),
        ({"enable_content_types": ["a", 3]}, "enable_content_types[1]: expected a string, got integer 3"),
        ({"session_id_header": 5}, "session_id_header: expected a string, got integer 5"),
        ({"attributes": {"key": "a"}}, "attributes: expected a list of attributes, got mapping"),
        ({"attributes": ["question"]}, "attributes[0]: expected a mapping, got string 'question'"),
        (
            {"attributes": [{"key": 1, "value_source": "fixed_value"}]},
            "attributes[0].key: expected a string, got integer 1",
        ),
        (
            {"attributes": [{"key": "a", "value_source": "fixed_value", "value": 3}]},
            "attributes[0].value: expected a string, got integer 3",
        ),
        (
            {"attributes": [{"key": "a", "value_source": "fixed_value", "apply_to_span": "yes"}]},
            "attributes[0].apply_to_span: expected a boolean (true or false), got string 'yes'",
        ),
        ({"defaultConfig": []}, "defaultConfig: expected a mapping, got list"),
        ({"matchRules": {"a": 1}}, "matchRules: expected a list of match rules, got mapping"),
        (
            {"matchRules": [{"_match_route_": "r"}]},
            "matchRules[0]._match_route_: expected a list of strings, got string 'r'",
        ),
        (
            {"matchRules": [{"_match_route_": ["r"], "configDisable": "yes"}]},
            "matchRules[0].configDisable: expected a boolean (true or false), got string 'yes'",
        ),
        ({"gateway_stats": []}, "gateway_stats: expected a mapping, got list"),
        ({"gateway_stats": {"limits": 5}}, "gateway_stats.limits: expected a mapping, got integer 5"),
        (
            {"gateway_stats": {"tracing": {"enabled": "on"}}},
            "gateway_stats.tracing.enabled: expected a boolean (true or false), got string 'on'",
        ),
        (
            {"gateway_stats": {"metadata_namespace": ""}},
            "gateway_stats.metadata_namespace: must not be empty",
        ),
        ({"gateway_stats": {"ai_log_file": ""}}, "gateway_stats.ai_log_file: must not be empty"),
    ],
)
def test_wrong_types(data: dict[str, Any], expected: str) -> None:
    assert one_error(data) == f"config.yaml: {expected}"


@pytest.mark.parametrize(
    ("limit", "value"),
    [
        ("max_request_body_bytes", -1),
        ("max_event_bytes", 0),
        ("max_attribute_bytes", -100),
        ("max_response_body_bytes", -5),
    ],
)
def test_negative_limits(limit: str, value: int) -> None:
    err = one_error({"gateway_stats": {"limits": {limit: value}}})
    assert err == f"config.yaml: gateway_stats.limits.{limit}: must be >= 1, got {value}"


@pytest.mark.parametrize("name", ["max_series_per_metric", "max_label_value_length"])
def test_negative_metric_limits(name: str) -> None:
    assert one_error({"gateway_stats": {"metrics": {name: -1}}}).endswith(
        f"metrics.{name}: must be >= 1, got -1"
    )


def test_bad_value_source_with_suggestion() -> None:
    err = one_error({"attributes": [{"key": "a", "value_source": "request_heder", "value": "x"}]})
    assert err == (
        "config.yaml: attributes[0].value_source: unknown value 'request_heder' (expected one of: "
        "fixed_value, request_header, request_body, response_header, response_body, "
        "response_streaming_body; did you mean 'request_header'?)"
    )


def test_bad_rule_with_suggestion() -> None:
    err = one_error(
        {
            "attributes": [
                {"key": "a", "value_source": "response_streaming_body", "value": "x", "rule": "Append"}
            ]
        }
    )
    assert err.endswith("(expected one of: first, replace, append; did you mean 'append'?)")


def test_rule_only_on_streaming_source() -> None:
    err = one_error(
        {"attributes": [{"key": "a", "value_source": "response_body", "value": "x", "rule": "append"}]}
    )
    assert err == (
        "config.yaml: attributes[0].rule: only meaningful with value_source response_streaming_body "
        "(this attribute uses response_body)"
    )
    # built-in keys may carry a rule with any source, including none
    parse_config(
        {
            "attributes": [
                {"key": "answer", "rule": "append"},
                {"key": "reasoning", "value_source": "response_body", "value": "r", "rule": "first"},
            ]
        }
    )


def test_value_source_required_for_custom_keys() -> None:
    err = one_error({"attributes": [{"key": "mine", "value": "x"}]})
    assert err.startswith(
        "config.yaml: attributes[0].value_source: required for key 'mine' (only built-in keys"
    )
    err = one_error({"attributes": [{"key": "mine", "value_source": None, "value": "x"}]})
    assert err.startswith("config.yaml: attributes[0].value_source: required for key 'mine'")
    err = one_error({"attributes": [{"key": "mine", "value_source": "", "value": "x"}]})
    assert (
        err
        == "config.yaml: attributes[0].value_source: must not be empty for key 'mine' (not a built-in key)"
    )
    for key in BUILTIN_KEYS:
        parse_config({"attributes": [{"key": key, "value_source": ""}]})


def test_key_and_value_required() -> None:
    assert one_error({"attributes": [{"value_source": "fixed_value"}]}) == (
        "config.yaml: attributes[0].key: required field is missing"
    )
    assert one_error({"attributes": [{"key": "", "value_source": "fixed_value"}]}) == (
        "config.yaml: attributes[0].key: must not be empty"
    )
    assert one_error({"attributes": [{"key": "h", "value_source": "request_header"}]}) == (
        "config.yaml: attributes[0].value: required with value_source request_header"
    )
    # fixed_value may be the empty string; built-in keys may leave the path empty (built-in extraction)
    parse_config(
        {
            "attributes": [
                {"key": "f", "value_source": "fixed_value"},
                {"key": "answer", "value_source": "response_body"},
            ]
        }
    )


def test_bad_header_name() -> None:
    err = one_error({"attributes": [{"key": "h", "value_source": "request_header", "value": "x y"}]})
    assert err == "config.yaml: attributes[0].value: not a valid header name: 'x y'"


def test_default_value_must_be_json() -> None:
    err = one_error(
        {"attributes": [{"key": "a", "value_source": "fixed_value", "default_value": float("nan")}]}
    )
    assert err == "config.yaml: attributes[0].default_value: nan is not a JSON number"
    parse_config(
        {"attributes": [{"key": "a", "value_source": "fixed_value", "default_value": [1, {"b": None}]}]}
    )


def test_bad_path_syntax_reported() -> None:
    """The path check runs for every body source, with the GJSON compiler's message."""
    errs = errors_of(
        {
            "attributes": [
                {"key": "a", "value_source": "request_body", "value": "messages.#((x"},
                {"key": "b", "value_source": "response_body", "value": "choices.0"},
                {"key": "c", "value_source": "response_streaming_body", "value": "x.#(("},
                {"key": "d", "value_source": "fixed_value", "value": "(("},  # literal: not a path
                {"key": "e", "value_source": "request_header", "value": "x-a"},
            ]
        }
    )
    assert len(errs) == 2
    assert errs[0].startswith("config.yaml: attributes[0].value: invalid path 'messages.#((x': ")
    assert errs[1].startswith("config.yaml: attributes[2].value: invalid path 'x.#((': ")


def test_bad_path_syntax_real_compiler() -> None:
    parse_config(README_A)  # the Higress README paths compile
    parse_config(
        {
            "attributes": [
                {"key": "u", "value_source": "request_body", "value": 'messages.#(role=="user")#.content'},
                {"key": "n", "value_source": "request_body", "value": "messages.#"},
                {"key": "j", "value_source": "response_body", "value": "$.choices[0].message.content"},
            ]
        }
    )
    errs = errors_of(
        {
            "attributes": [
                {"key": "a", "value_source": "request_body", "value": 'messages.#(role=="user"'},
            ]
        }
    )
    assert len(errs) == 1
    assert errs[0].startswith("config.yaml: attributes[0].value: invalid path 'messages.#(role==\"user\"': ")


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        (
            {"name": "ai-team", "request_header": "x"},
            "name: 'ai-team' is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)",
        ),
        (
            {"name": "1team", "request_header": "x"},
            "name: '1team' is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)",
        ),
        (
            {"name": "__team", "request_header": "x"},
            "name: '__team': label names starting with '__' are reserved",
        ),
        ({"name": "ai_model", "request_header": "x"}, "name: 'ai_model' clashes with a built-in label"),
        (
            {"name": "gen_ai_request_model", "request_header": "x"},
            "name: 'gen_ai_request_model' clashes with a built-in label",
        ),
        ({"name": "team"}, ": exactly one of request_header or attribute must be set"),
        (
            {"name": "team", "request_header": "x", "attribute": "question"},
            ": exactly one of request_header or attribute must be set",
        ),
        (
            {"name": "team", "attribute": "questoin"},
            "attribute: 'questoin' is not a configured attribute key; did you mean 'question'?",
        ),
        (
            {"name": "team", "request_header": "x", "families": ["bad name"]},
            "families[0]: 'bad name' is not a valid metric family name",
        ),
        ({"request_header": "x"}, "name: required field is missing"),
    ],
)
def test_bad_extra_labels(label: dict[str, Any], expected: str) -> None:
    err = one_error({"gateway_stats": {"metrics": {"extra_labels": [label]}}})
    assert (
        err
        == f"config.yaml: gateway_stats.metrics.extra_labels[0]{'.' if expected[0] != ':' else ''}{expected}"
    )


def test_extra_label_attribute_from_rule_and_duplicates() -> None:
    base = {
        "defaultConfig": {},
        "matchRules": [
            {
                "_match_route_": ["r"],
                "config": {
                    "attributes": [{"key": "project", "value_source": "request_header", "value": "x-project"}]
                },
            }
        ],
    }
    cfg = parse_config(
        {
            **base,
            "gateway_stats": {"metrics": {"extra_labels": [{"name": "project", "attribute": "project"}]}},
        }
    )
    assert cfg.extensions.metrics.extra_labels[0].attribute == "project"
    err = one_error(
        {
            **base,
            "gateway_stats": {
                "metrics": {
                    "extra_labels": [
                        {"name": "p", "attribute": "project"},
                        {"name": "p", "request_header": "x"},
                    ]
                }
            },
        }
    )
    assert err == "config.yaml: gateway_stats.metrics.extra_labels[1].name: label 'p' is defined twice"


def test_bad_profiles() -> None:
    err = one_error({"gateway_stats": {"metrics": {"profiles": ["higres"]}}})
    assert err == (
        "config.yaml: gateway_stats.metrics.profiles[0]: unknown value 'higres' "
        "(expected one of: higress, genai; did you mean 'higress'?)"
    )
    err = one_error({"gateway_stats": {"metrics": {"profiles": ["genai", "genai"]}}})
    assert err == "config.yaml: gateway_stats.metrics.profiles[1]: 'genai' is listed twice"
    assert parse_config({"gateway_stats": {"metrics": {"profiles": []}}}).extensions.metrics.profiles == ()


def test_match_rule_needs_a_selector() -> None:
    err = one_error({"matchRules": [{"config": {}}]})
    assert err.startswith("config.yaml: matchRules[0]: a match rule needs at least one non-empty selector")
    err = one_error({"matchRules": [{"_match_route_": [], "config": {}}]})
    assert "needs at least one non-empty selector" in err
    err = one_error({"matchRules": [{"_match_route_": ["a"], "ingress": ["b"]}]})
    assert err == "config.yaml: matchRules[0]: both '_match_route_' and 'ingress' are given; use one of them"
    err = one_error({"matchRules": [{"_match_route_": [""]}]})
    assert err == "config.yaml: matchRules[0]._match_route_[0]: must not be empty"


def test_multiple_errors_reported_together() -> None:
    data = {
        "defaultConfig": {
            "value_length_limit": -1,
            "attributes": [
                {"key": "a", "value_source": "nope", "value": "x"},
                {"key": "b", "value_source": "fixed_value", "rule": "last"},
            ],
        },
        "matchRules": [
            {
                "_match_route_": ["r"],
                "config": {
                    "attributes": [{"key": "c", "value_source": "request_header", "value": "h", "extra": 1}]
                },
            },
            {"_match_domain_": ["d"], "config": {"disable_openai_usage": "no"}},
        ],
        "gateway_stats": {
            "limits": {"max_event_bytes": -2},
            "metrics": {"extra_labels": [{"name": "le", "attribute": "a"}]},
        },
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, "all.yaml")
    errs = info.value.errors
    assert errs == [
        "all.yaml: defaultConfig.attributes[0].value_source: unknown value 'nope' (expected one of: "
        "fixed_value, request_header, request_body, response_header, response_body, response_streaming_body)",
        "all.yaml: defaultConfig.attributes[1].rule: unknown value 'last' (expected one of: first, replace, "
        "append)",
        "all.yaml: defaultConfig.value_length_limit: must be >= 1, got -1",
        "all.yaml: matchRules[0].config.attributes[0].extra: unknown field (known fields: key, value_source, "
        "value, default_value, rule, apply_to_log, apply_to_span, trace_span_key, as_separate_log_field)",
        "all.yaml: matchRules[1].config.disable_openai_usage: expected a boolean (true or false), "
        "got string 'no'",
        "all.yaml: gateway_stats.limits.max_event_bytes: must be >= 1, got -2",
        "all.yaml: gateway_stats.metrics.extra_labels[0].name: 'le' clashes with a built-in label",
        "all.yaml: gateway_stats.metrics.extra_labels[0].attribute: 'a' is not a configured attribute key",
    ]
    assert str(info.value) == "\n".join(errs)
    assert isinstance(info.value, ValueError)


def test_config_error_accepts_a_single_string() -> None:
    e = ConfigError("x: broken")
    assert e.errors == ["x: broken"] and str(e) == "x: broken"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the document is empty"),
        ("# only a comment\n", "the document is empty"),
        ("- a\n- b\n", "(document): expected a mapping, got list"),
        ("just text\n", "(document): expected a mapping, got string 'just text'"),
        ("a: [1, 2\nb: 3\n", "line 2, column 2: invalid YAML: expected ',' or ']'"),
        (
            "attributes: []\nattributes: []\n",
            "line 2, column 1: invalid YAML: found duplicate key 'attributes'",
        ),
        ('{"value_length_limit": 1, "value_length_limit": 2}', "invalid JSON: found duplicate key"),
        ('{"a": 1,', "line 1, column 9: invalid JSON: Expecting property name"),
        ("1: x\n", "(document): field names must be strings, got integer 1"),
    ],
)
def test_document_level_errors(tmp_path: Path, text: str, expected: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(p))
    assert str(info.value).startswith(f"{p}: {expected}"), str(info.value)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "missing.yaml"))
    assert str(info.value).startswith(f"{tmp_path / 'missing.yaml'}: cannot read: ")
    p = tmp_path / "bin.yaml"
    p.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(str(p))


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    p = tmp_path / "m.yaml"
    p.write_text(
        "base: &b {key: x, value_source: fixed_value, value: '1'}\nattributes:\n  - <<: *b\n    value: '2'\n"
    )
    with pytest.raises(ConfigError, match=r"c?base: unknown field"):
        load_config(str(p))  # `base` itself is unknown, but the merge parsed
    p.write_text(
        "attributes:\n  - &a {key: x, value_source: fixed_value, value: '1'}\n  - <<: *a\n    key: y\n"
    )
    assert [(a.key, a.value) for a in load_config(str(p)).default.attributes] == [("x", "1"), ("y", "1")]


# --------------------------------------------------------------------------------------- hot reload


def write(path: Path, text: str) -> None:
    """Write and move mtime forward, so the change is seen whatever the filesystem's timestamp granularity."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    ns = max(path.stat().st_mtime_ns, before + 1_000_000_000)
    os.utime(path, ns=(ns, ns))


def test_store_without_path_uses_default() -> None:
    store = ConfigStore(None, environ={})
    assert store.current == with_environment(default_config(), {})
    assert store.current.extensions.tracing.enabled is False  # decided: no OTEL_* variable asks for spans
    assert store.check() is False
    assert (store.reloads_ok, store.reloads_failed, store.last_error) == (0, 0, None)


def test_store_initial_load_failure_raises(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("value_length_limit: x\n")
    with pytest.raises(ConfigError):
        ConfigStore(str(p))
    with pytest.raises(ConfigError):
        ConfigStore(str(tmp_path / "missing.yaml"))


def test_store_reload_on_change(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    write(p, "value_length_limit: 10\n")
    seen: list[Config] = []
    store = ConfigStore(str(p), on_change=seen.append)
    assert store.current.default.value_length_limit == 10
    assert store.check() is False  # unchanged
    write(p, "value_length_limit: 20\n")
    assert store.check() is True
    assert store.current.default.value_length_limit == 20
    assert seen == [store.current]
    assert (store.reloads_ok, store.reloads_failed, store.last_error) == (1, 0, None)
    assert store.check() is False


def test_store_keeps_last_good_on_broken_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = tmp_path / "c.yaml"
    write(p, "value_length_limit: 10\n")
    seen: list[Config] = []
    store = ConfigStore(str(p), on_change=seen.append)
    good = store.current
    write(p, "value_length_limit: -3\nattributes: [{key: a, value_source: bogus, value: x}]\n")
    with caplog.at_level(logging.WARNING, logger="gateway_stats.config.store"):
        assert store.check() is False
    assert store.current is good
    assert store.reloads_failed == 1 and store.reloads_ok == 0
    assert store.last_error is not None and "value_length_limit: must be >= 1" in store.last_error
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert "\n" not in msg and "keeping the last good config" in msg and "bogus" in msg
    # the same broken file is not retried and not counted again
    assert store.check() is False and store.reloads_failed == 1
    # invalid YAML is handled the same way
    write(p, "value_length_limit: [\n")
    assert store.check() is False and store.reloads_failed == 2 and "invalid YAML" in (store.last_error or "")
    assert seen == []
    # fixed: reloads
    write(p, "value_length_limit: 30\n")
    assert store.check() is True
    assert store.current.default.value_length_limit == 30 and store.last_error is None
    assert len(seen) == 1


def test_store_keeps_config_when_file_deleted(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    write(p, "value_length_limit: 10\n")
    store = ConfigStore(str(p))
    good = store.current
    p.unlink()
    assert store.check() is False
    assert store.current is good
    assert store.reloads_failed == 1 and "cannot stat" in (store.last_error or "")
    assert store.check() is False and store.reloads_failed == 1  # counted once
    write(p, "value_length_limit: 11\n")
    assert store.check() is True and store.current.default.value_length_limit == 11


def test_store_on_change_failure_does_not_break_reload(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    write(p, "{}\n")

    def boom(_: Config) -> None:
        raise RuntimeError("callback failed")

    store = ConfigStore(str(p), on_change=boom)
    write(p, "value_length_limit: 5\n")
    assert store.check() is True
    assert store.current.default.value_length_limit == 5


def test_store_watch_polls_until_cancelled(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    write(p, "value_length_limit: 1\n")
    store = ConfigStore(str(p), poll_interval=0.01)

    async def scenario() -> None:
        task = asyncio.create_task(store.watch())
        write(p, "value_length_limit: 2\n")
        for _ in range(200):
            await asyncio.sleep(0.01)
            if store.reloads_ok:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert store.reloads_ok == 1 and store.current.default.value_length_limit == 2


# ------------------------------------------------------------------------------------------ overload


def test_overload_defaults_and_parsing() -> None:
    assert Extensions().overload == OverloadConfig(False, 10, 0, 100)
    ext = parse_config(
        {"gateway_stats": {"overload": {"enabled": True, "max_loop_lag_ms": 5, "max_inflight_calls": 300}}}
    ).extensions
    assert ext.overload == OverloadConfig(enabled=True, max_loop_lag_ms=5, max_inflight_calls=300)
    ext = parse_config(
        {"gateway_stats": {"overload": {"recover_after_ms": 0, "max_inflight_calls": 0}}}
    ).extensions
    assert ext.overload == OverloadConfig(recover_after_ms=0)


@pytest.mark.parametrize(
    ("overload", "message"),
    [
        ({"enabled": "yes"}, "enabled: expected a boolean (true or false), got string 'yes'"),
        ({"max_loop_lag_ms": 0}, "max_loop_lag_ms: must be >= 1, got 0"),
        ({"max_loop_lag_ms": 2.5}, "max_loop_lag_ms: expected an integer, got number 2.5"),
        ({"max_inflight_calls": -1}, "max_inflight_calls: must be >= 0, got -1"),
        ({"recover_after_ms": -5}, "recover_after_ms: must be >= 0, got -5"),
        ({"max_lag_ms": 5}, "max_lag_ms: unknown field (did you mean 'max_loop_lag_ms'?)"),
    ],
)
def test_overload_errors(overload: dict[str, object], message: str) -> None:
    assert (
        one_error({"gateway_stats": {"overload": overload}})
        == f"config.yaml: gateway_stats.overload.{message}"
    )
