"""gateway-stats: AI-traffic observability sidecar for Envoy (ext_proc)."""

__version__ = "0.1.0"
