"""`envoy-config --upstream-tls` verifies the upstream: Envoy's TLS context without a validation context
accepts any certificate, so the generator always writes the CA bundle and the host the certificate must
name, unless the user turns it off explicitly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from gateway_stats.testing.procs import envoy_binary


def _upstream_tls(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "gateway_stats", "envoy-config", "--upstream", "api.openai.com:443", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    clusters = yaml.safe_load(out)["static_resources"]["clusters"]
    (llm,) = [c for c in clusters if c["name"] == "llm_upstream"]
    return llm.get("transport_socket", {}).get("typed_config", {})


def test_upstream_certificate_chain_and_name_are_verified(tmp_path) -> None:
    tls = _upstream_tls("--upstream-tls")
    assert tls["sni"] == "api.openai.com"
    vc = tls["common_tls_context"]["validation_context"]
    assert vc["trusted_ca"] == {"filename": "/etc/ssl/certs/ca-certificates.crt"}
    assert vc["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "api.openai.com"}}
    ]


def test_custom_ca_and_explicit_opt_out() -> None:
    assert _upstream_tls("--upstream-tls", "--upstream-ca", "/ca.pem")["common_tls_context"][
        "validation_context"
    ]["trusted_ca"] == {"filename": "/ca.pem"}
    assert "common_tls_context" not in _upstream_tls("--upstream-tls", "--upstream-ca", "")
    assert _upstream_tls() == {}  # plain HTTP upstream: no TLS at all


def test_envoy_accepts_the_verifying_bootstrap(tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(Path("/etc/ssl/certs/ca-certificates.crt").read_bytes())
    cfg = tmp_path / "envoy.yaml"
    cfg.write_text(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway_stats",
                "envoy-config",
                "--upstream",
                "api.openai.com:443",
                "--upstream-tls",
                "--upstream-ca",
                str(ca),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    r = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
