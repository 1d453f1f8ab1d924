"""The ext_proc listener and the side HTTP port: TLS and mTLS (through Envoy's TLS transport socket),
the Unix socket's mode and group, health apart from metrics, and the metrics bearer token."""

from __future__ import annotations

import grp
import http.client
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from conftest import ai_log_for
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway_stats.testing import procs
from gateway_stats.testing.procs import Stack

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "tls?"}]}


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(d: Path, name: str, ca: str, san: str) -> None:
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-subj",
        f"/CN={name}",
        "-out",
        f"{name}.csr",
        cwd=d,
    )
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.crt",
        cwd=d,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, the sidecar's certificate (DNS:gateway-stats, IP:127.0.0.1), Envoy's client certificate,
    and a rogue CA with its own client certificate. Made at test time with the openssl CLI."""
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "rogue-ca"):
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            f"{ca}.key",
            "-subj",
            f"/CN={ca}",
            "-out",
            f"{ca}.crt",
            cwd=d,
        )
    _issue(d, "server", "ca", "DNS:gateway-stats,IP:127.0.0.1")
    _issue(d, "client", "ca", "DNS:envoy")
    _issue(d, "rogue", "rogue-ca", "DNS:envoy")
    return d


def _observed(st: Stack, marker: str, timeout: float = 10.0) -> bool:
    try:
        ai_log_for(st, marker, timeout)
    except AssertionError:  # timed out
        return False
    return True


def _call(st: Stack, marker: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", st.envoy_port, timeout=10)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(CHAT), headers={"x-mock-chat-id": marker})
    r = conn.getresponse()
    r.read()
    conn.close()
    return r.status


def _health(port: int, creds: grpc.ChannelCredentials | None) -> str:
    target = f"127.0.0.1:{port}"
    opts = [("grpc.ssl_target_name_override", "gateway-stats")]
    ch = grpc.secure_channel(target, creds, options=opts) if creds else grpc.insecure_channel(target)
    try:
        stub = health_pb2_grpc.HealthStub(ch)
        return str(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=3).status)
    except grpc.RpcError as exc:
        return exc.code().name
    finally:
        ch.close()


def _creds(pki: Path, client: str | None) -> grpc.ChannelCredentials:
    ca = (pki / "ca.crt").read_bytes()
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    return grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=(pki / f"{client}.key").read_bytes(),
        certificate_chain=(pki / f"{client}.crt").read_bytes(),
    )


def test_tls_through_envoy(stack_factory, pki: Path) -> None:  # type: ignore[no-untyped-def]
    st: Stack = stack_factory(
        sidecar_args=["--tls-cert", str(pki / "server.crt"), "--tls-key", str(pki / "server.key")],
        envoy_extra={"processor_tls_ca": str(pki / "ca.crt")},
    )
    assert _call(st, "tls-1") == 200 and _observed(st, "tls-1")
    assert _health(st.grpc_port, None) == "UNAVAILABLE"  # plaintext is refused
    assert _health(st.grpc_port, _creds(pki, None)) == "1"  # SERVING over TLS


def test_mtls_through_envoy(stack_factory, pki: Path) -> None:  # type: ignore[no-untyped-def]
    tls = ["--tls-cert", str(pki / "server.crt"), "--tls-key", str(pki / "server.key")]
    st: Stack = stack_factory(
        sidecar_args=[*tls, "--tls-client-ca", str(pki / "ca.crt")],
        envoy_extra={
            "processor_tls_ca": str(pki / "ca.crt"),
            "processor_tls_cert": str(pki / "client.crt"),
            "processor_tls_key": str(pki / "client.key"),
        },
    )
    assert _call(st, "mtls-1") == 200 and _observed(st, "mtls-1")
    assert _health(st.grpc_port, _creds(pki, "client")) == "1"
    assert _health(st.grpc_port, _creds(pki, None)) == "UNAVAILABLE"  # no client certificate
    assert _health(st.grpc_port, _creds(pki, "rogue")) == "UNAVAILABLE"  # signed by another CA


def test_mtls_envoy_without_client_cert_fails_open(stack_factory, pki: Path) -> None:  # type: ignore[no-untyped-def]
    tls = ["--tls-cert", str(pki / "server.crt"), "--tls-key", str(pki / "server.key")]
    st: Stack = stack_factory(
        sidecar_args=[*tls, "--tls-client-ca", str(pki / "ca.crt")],
        envoy_extra={"processor_tls_ca": str(pki / "ca.crt")},
    )
    assert _call(st, "mtls-refused") == 200  # traffic unaffected, the call simply unobserved
    assert not _observed(st, "mtls-refused", timeout=1.0)


# ------------------------------------------------------------------------------ unix socket / side
def _serve(tmp: Path, *args: str) -> procs.Proc:
    return procs._spawn("gs", [sys.executable, "-m", "gateway_stats", "serve", *args], tmp)


def _get(port: int, path: str, token: str | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path, headers={"authorization": f"Bearer {token}"} if token else {})
    r = conn.getresponse()
    r.read()
    conn.close()
    return r.status


def test_unix_socket_mode_and_group(tmp_path: Path) -> None:
    sock = tmp_path / "gs.sock"
    mport = procs.free_port()
    group = "daemon" if os.geteuid() == 0 else grp.getgrgid(os.getgid()).gr_name
    p = _serve(
        tmp_path,
        "--grpc-address",
        f"unix:{sock}",
        "--metrics-address",
        f"127.0.0.1:{mport}",
        "--socket-group",
        group,
    )
    try:
        procs.wait_http(f"http://127.0.0.1:{mport}/readyz", proc=p.popen)
        st_ = os.stat(sock)
        assert stat.S_ISSOCK(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o660
        assert grp.getgrgid(st_.st_gid).gr_name == group
    finally:
        p.stop()


def test_health_apart_from_metrics_with_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-scrape-token\n")
    gport, mport, hport = procs.free_port(), procs.free_port(), procs.free_port()
    p = _serve(
        tmp_path,
        "--grpc-address",
        f"127.0.0.1:{gport}",
        "--metrics-address",
        f"127.0.0.1:{mport}",
        "--health-address",
        f"127.0.0.1:{hport}",
        "--metrics-token-file",
        str(token),
    )
    try:
        procs.wait_http(f"http://127.0.0.1:{hport}/readyz", proc=p.popen)
        assert _get(hport, "/healthz") == 200 and _get(hport, "/readyz") == 200
        assert _get(hport, "/metrics") == 404 and _get(hport, "/metrics", "s3cret-scrape-token") == 404
        assert _get(mport, "/metrics") == 401
        assert _get(mport, "/metrics", "wrong") == 401
        assert _get(mport, "/metrics", "s3cret-scrape-token") == 200
        assert _get(mport, "/healthz") == 404
    finally:
        p.stop()
    assert "s3cret-scrape-token" not in p.log_text()


def test_bad_listen_options_are_refused(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "gateway_stats", "serve", "--tls-client-ca", "x.pem"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "--tls-client-ca" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "gateway_stats", "serve", "--socket-group", "no-such-group-x"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "no such group" in r.stderr
