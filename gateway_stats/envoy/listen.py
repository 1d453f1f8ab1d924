"""How the ext_proc listener is exposed: TLS / mTLS credentials, and the Unix socket's mode and group.

- TCP with `--tls-cert`/`--tls-key`: TLS (Envoy's `UpstreamTlsContext` on the gateway_stats cluster,
  `envoy-config --processor-tls-ca`); add `--tls-client-ca` and only clients with a certificate
  signed by that CA (Envoy with `--processor-tls-cert/--processor-tls-key`) get a stream: mTLS.
- `unix:/path`: the socket file is created with mode 0660 (`--socket-mode`), never wider, even for a
  moment (the umask is narrowed around the bind), and given `--socket-group` when set, so only Envoy's
  group can connect.
"""

from __future__ import annotations

import contextlib
import grp
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

_umask_lock = threading.Lock()


@dataclass(frozen=True)
class ListenSecurity:
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    socket_mode: int = 0o660
    socket_group: str | None = None

    def validate(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("--tls-cert and --tls-key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("--tls-client-ca (mTLS) needs --tls-cert and --tls-key")
        if self.socket_mode & ~0o777:
            raise ValueError(f"--socket-mode {oct(self.socket_mode)}: permission bits only")
        if self.socket_group is not None:
            _gid(self.socket_group)

    def credentials(self) -> grpc.ServerCredentials | None:
        if not self.tls_cert or not self.tls_key:
            return None
        key = Path(self.tls_key).read_bytes()
        chain = Path(self.tls_cert).read_bytes()
        ca = Path(self.tls_client_ca).read_bytes() if self.tls_client_ca else None
        return grpc.ssl_server_credentials(
            [(key, chain)], root_certificates=ca, require_client_auth=ca is not None
        )


def _gid(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"--socket-group {group!r}: no such group") from None


def add_port(server: grpc.aio.Server, target: str, sec: ListenSecurity) -> int:
    """Bind `target` with `sec` applied; returns the port (0 for a Unix socket)."""
    creds = sec.credentials()
    if not target.startswith("unix:"):
        return (
            server.add_secure_port(target, creds) if creds is not None else server.add_insecure_port(target)
        )
    path = target[len("unix:") :].removeprefix("//")
    with contextlib.suppress(FileNotFoundError):
        if Path(path).is_socket():
            os.unlink(path)  # a stale socket from a killed process
    with _umask_lock:  # the umask is process-wide: narrow it only around the bind
        old = os.umask(0o777 & ~sec.socket_mode)
        try:
            port = (
                server.add_secure_port(target, creds)
                if creds is not None
                else server.add_insecure_port(target)
            )
        finally:
            os.umask(old)
    os.chmod(path, sec.socket_mode)
    if sec.socket_group is not None:
        shutil.chown(path, group=_gid(sec.socket_group))
    return port
