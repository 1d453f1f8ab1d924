"""`serve --max-rss-mib`: past the limit the sidecar drains and exits 0 for its supervisor to restart it
(the mitigation for grpcio's per-reset-stream growth, docs/reliability.md section 5)."""

from __future__ import annotations

import sys
from pathlib import Path

from gateway_stats.testing import procs


def test_over_the_rss_limit_the_sidecar_drains_and_exits(tmp_path: Path) -> None:
    gport, mport = procs.free_port(), procs.free_port()
    argv = [sys.executable, "-m", "gateway_stats", "serve", "--grpc-address", f"127.0.0.1:{gport}"]
    argv += ["--metrics-address", f"127.0.0.1:{mport}", "--max-rss-mib", "1", "--drain-seconds", "1"]
    argv += ["--workers", "1"]  # one process: it is the one that exits (workers are restarted)
    p = procs._spawn("gs", argv, tmp_path)
    try:
        procs.wait_http(f"http://127.0.0.1:{mport}/readyz", proc=p.popen)
        assert p.popen.wait(20) == 0
    finally:
        p.stop()
    log = p.log_text()
    assert "over --max-rss-mib 1: draining and exiting" in log and "draining in-flight streams" in log
