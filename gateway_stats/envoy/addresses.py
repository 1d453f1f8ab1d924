"""Parsing of listen addresses: `HOST:PORT`, `[v6]:PORT`, `:PORT`, and `unix:/path` for gRPC."""

from __future__ import annotations


def split_host_port(addr: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    if addr.startswith("["):
        host, _, port = addr[1:].partition("]:")
    else:
        host, sep, port = addr.rpartition(":")
        if not sep:
            raise ValueError(f"address {addr!r}: expected HOST:PORT")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address {addr!r}: port must be a number from 0 to 65535")
    return (host or default_host), int(port)


def grpc_target(addr: str) -> str:
    """Normalise a gRPC listen address for grpc's add_insecure_port."""
    if addr.startswith("unix:"):
        return addr
    host, port = split_host_port(addr)
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"
