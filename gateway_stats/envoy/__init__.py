"""Everything that speaks to Envoy: the ext_proc servicer (a thin adapter from gRPC messages to the
sans-IO observer), the gRPC and side-HTTP servers and the per-process runtime that wires config,
sinks and self-metrics together, and the bootstrap generator behind `gateway-stats envoy-config`.

May import everything else in the package; nothing in core, providers, config or sinks imports it.
"""
