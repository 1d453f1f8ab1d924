"""`gateway-stats prices` and `check-config` on pricing blocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway_stats.cli import main


def test_prices_shows_each_price_and_its_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prices", "--model", "gpt-4o"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "gpt-4o: priced by built-in — genai-prices 0.2.3 as openai/gpt-4o (per token, USD)"
    assert "  input        0.0000025 per token (2.5 per million)" in out
    assert "  cache_write  (none: billed at the input price)" in out


def test_prices_with_a_config_route_and_unknown_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.json").write_text(json.dumps({"gpt-4o": {"input_cost_per_token": 1e-6}}))
    (tmp_path / "c.yaml").write_text(
        "gateway_stats:\n  pricing:\n    files: [p.json]\n"
        "    overrides: [{route: team-a, model: gpt-4o, input_cost_per_token: 5e-7}]\n"
    )
    cfg = str(tmp_path / "c.yaml")
    assert main(["prices", "--config", cfg, "--model", "gpt-4o", "--route", "team-a"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("gpt-4o on route team-a: priced by override (route and model) — overrides[0]")
    assert out[-2:] == [
        "also listed (lower precedence, not used): files — file p.json",
        "also listed (lower precedence, not used): built-in — genai-prices 0.2.3 as openai/gpt-4o",
    ]
    assert main(["prices", "--config", cfg, "--model", "no-such-model-xyz"]) == 1
    assert "no price in any source" in capsys.readouterr().out


def test_check_config_validates_price_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.json").write_text(json.dumps({"m": {"input_cost_per_token": -1}}))
    (tmp_path / "c.yaml").write_text("gateway_stats:\n  pricing:\n    files: [p.json]\n")
    assert main(["check-config", str(tmp_path / "c.yaml")]) == 1
    err = capsys.readouterr().err
    assert (
        "c.yaml: gateway_stats.pricing.files[0]: p.json: m.input_cost_per_token: must not be negative" in err
    )
    (tmp_path / "p.json").write_text(json.dumps({"m": {"input_cost_per_token": 1}}))
    assert main(["check-config", str(tmp_path / "c.yaml")]) == 0
    assert "1 price files (1 models)" in capsys.readouterr().out
