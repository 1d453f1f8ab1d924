"""The bench harness: its parsers and tables on known input, and one tiny real run through Envoy.

No timing is asserted anywhere: the smoke run checks that every set-up and workload produced counts
and that the ai_log lines the bench counts as "observed" really carry the upstream's token counts.
"""

from __future__ import annotations

import json
import os
from array import array
from pathlib import Path

import orjson

from gateway_stats.bench import canned, probes, report
from gateway_stats.bench.client import Response
from gateway_stats.bench.driver import main as bench_main
from gateway_stats.bench.driver import write_between
from gateway_stats.bench.httpwire import LAST_CHUNK, ChunkedDecoder, chunk
from gateway_stats.bench.profile import summarise
from gateway_stats.bench.stacks import envoy_config
from gateway_stats.envoy.bootstrap import EnvoyOptions, bootstrap


def _filters(cfg: dict) -> list[dict]:  # type: ignore[type-arg]
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm["http_filters"]  # type: ignore[no-any-return]


def test_chunked_decoder_any_split() -> None:
    payload = [b"hello ", b"", b"x" * 300, b"data: {}\n\n"]
    wire = b"".join(chunk(p) for p in payload if p) + LAST_CHUNK + b"NEXT"
    for step in (1, 2, 3, 7, 64, len(wire)):
        d = ChunkedDecoder()
        out = b""
        for i in range(0, len(wire), step):
            out += d.feed(wire[i : i + step])
            if d.done:
                break
        assert out == b"".join(payload)
        assert d.done
        assert b"NEXT".startswith(d.rest)  # what followed the last chunk, as far as it was fed
    d = ChunkedDecoder()
    assert d.feed(wire) == b"".join(payload) and d.rest == b"NEXT"


def test_response_times_each_sse_event_from_its_sent_stamp() -> None:
    events = canned.sse_events(3)
    body = b"".join(e % (1000 + i) for i, e in enumerate(events)) + canned.SSE_DONE
    wire = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    wire += chunk(body) + LAST_CHUNK
    delays: array[int] = array("q")
    r = Response(delays)
    for i in range(0, len(wire), 50):  # events arrive split across reads
        r.feed(wire[i : i + 50], 5000)
    assert r.done and r.status == 200 and r.sse
    assert r.first_event_ns == 5000
    # 5 stamped events (3 deltas, finish, usage); the first is TTFB, the 4 later ones are chunk delays.
    assert list(delays) == [5000 - 1001, 5000 - 1002, 5000 - 1003, 5000 - 1004]


def test_canned_usage_matches_what_the_bench_counts() -> None:
    last = orjson.loads(canned.sse_events(20)[-1][6:].replace(b"%d", b"1"))
    assert last["usage"]["prompt_tokens"] == canned.PROMPT_TOKENS
    assert last["usage"]["completion_tokens"] == canned.completion_tokens(True, 20) == 20
    doc = orjson.loads(canned.JSON_RESPONSE)
    assert doc["usage"]["completion_tokens"] == canned.completion_tokens(False, 0)


def test_envoy_configs_only_narrow_the_deployed_bootstrap() -> None:
    def opts() -> EnvoyOptions:
        return EnvoyOptions(listen="127.0.0.1:1", upstream="127.0.0.1:2", processor="127.0.0.1:3")

    plain = envoy_config("plain", opts())
    assert [f["name"] for f in _filters(plain)] == ["envoy.filters.http.router"]
    assert [c["name"] for c in plain["static_resources"]["clusters"]] == ["llm_upstream"]

    noop = envoy_config("noop", opts())
    names = [f["name"] for f in _filters(noop)]
    assert names == ["envoy.filters.http.ext_proc", "envoy.filters.http.router"]
    ext = _filters(noop)[0]["typed_config"]
    assert ext["processing_mode"]["request_body_mode"] == "BUFFERED"
    assert ext["processing_mode"]["response_body_mode"] == "STREAMED"
    assert "metadata_options" not in ext and ext["failure_mode_allow"] is True

    stop = _filters(envoy_config("noop-stop", opts()))[0]["typed_config"]
    assert stop["allow_mode_override"] is True  # else Envoy ignores its answer's mode override
    assert {k: v for k, v in stop.items() if k != "allow_mode_override"} == ext

    o = opts()
    o.mode, o.log_format = "inline", "dynamic-metadata"
    assert envoy_config("inline", opts()) == bootstrap(o)  # exactly envoy-config's default
    names = [f["name"] for f in _filters(envoy_config("inline", opts()))]
    assert names == ["envoy.filters.http.ext_proc", "envoy.filters.http.router"]
    o.mode = "observe"
    assert envoy_config("observe", opts()) == bootstrap(o)
    o.mode, o.log_format = "inline", "filter-state"
    lua = envoy_config("inline-lua", opts())
    assert lua == bootstrap(o) and _filters(lua)[0]["name"] == "envoy.filters.http.lua"


def _row(cfg: str, wl: str, rep: int, p50: float, rps: float, envoy: float, proc: float | None) -> dict:  # type: ignore[type-arg]
    return {
        "config": cfg,
        "workload": wl,
        "rep": rep,
        "rps": rps,
        "latency_ms": {"p50": p50, "p99": p50 * 2},
        "envoy_cpu_us": envoy,
        "proc_cpu_us": proc,
        "observed_pct": None if proc is None else 100.0,
        "envoy_ext_proc": {},
    }


def test_summary_takes_same_run_deltas_then_medians() -> None:
    rows = [
        _row("plain", "json-1", 0, 0.2, 5000, 100, None),
        _row("plain", "json-1", 1, 0.4, 4000, 100, None),
        _row("plain", "json-1", 2, 0.3, 4500, 100, None),
        _row("inline", "json-1", 0, 0.7, 1000, 300, 500),
        _row("inline", "json-1", 1, 1.1, 800, 300, 700),
        _row("inline", "json-1", 2, 0.5, 900, 300, 600),
    ]
    s = report.Summary(rows)
    assert s.med("json-1", "inline", "latency_ms.p50") == 0.7
    # deltas per repeat: 0.5, 0.7, 0.2 -> median 0.5 (a difference of medians would say 0.4)
    assert abs((s.delta("json-1", "inline", "latency_ms.p50") or 0) - 0.5) < 1e-9
    assert abs((s.ratio("json-1", "inline", "rps") or 0) - 0.2) < 1e-9
    assert s.added_cpu("json-1", "inline") == 800  # 300 + 600 - 100
    table = report.workload_table(s, "json-1", ["plain", "inline"], sse=False)
    assert "plain Envoy" in table and "Envoy + gateway-stats, inline" in table and "(+0.50)" in table
    ts = {t.text: t for t in report.targets(s)}
    t = ts["inline: JSON 1 conn, added p50 ≤ +1.0 ms"]
    assert t.met is True and t.measured == "+0.50 ms"
    assert ts["observe: JSON 1 conn, added p50 ≤ +0.48 ms (WASM)"].met is None  # not measured


def test_exact_ai_log_count_needs_both_token_counts(tmp_path: Path) -> None:
    def line(inp: int, out: int) -> bytes:
        inner = json.dumps(
            {"input_token": inp, "model": "m", "output_token": out, "total_token": inp + out},
            separators=(",", ":"),
        )
        return json.dumps({"ai_log": inner}, separators=(",", ":")).encode() + b"\n"

    p = tmp_path / "access.log"
    p.write_bytes(line(1, 1) + line(57, 64) + line(57, 20) + b'{"ai_log":"-"}\n' + line(57, 64))
    start = len(line(1, 1))
    assert probes.count_exact_ai_logs(p, start, 57, 64) == (2, 4)
    assert probes.count_exact_ai_logs(p, 0, 57, 20) == (1, 5)
    assert probes.cpu_seconds(os.getpid()) > 0 and probes.rss_mb(os.getpid()) > 0


def test_profile_summary_splits_ours_from_grpc() -> None:
    raw = "\n".join(
        [
            "main (gateway_stats/cli.py:1);Handle._run (asyncio/events.py:80) 6",
            "main (gateway_stats/cli.py:1);Handle._run (asyncio/events.py:80);"
            "ExtProcServicer.Process (gateway_stats/servicer.py:120);"
            "headers_dict (gateway_stats/servicer.py:44) 3",
            "Thread._bootstrap (threading.py:1);Thread.run (threading.py:975) 1",
        ]
    )
    p = summarise(raw, "t")
    assert p.samples == 10
    assert p.buckets["grpc.aio coroutine steps (Cython, seen as asyncio Handle._run)"] == 6
    assert p.self_time["headers_dict (gateway_stats/servicer.py)"] == 3
    assert p.inclusive["ExtProcServicer.Process (gateway_stats/servicer.py)"] == 3


def test_write_between_keeps_the_prose(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    doc.write_text("# T\n\nprose before\n\n<!-- x:begin -->\nold\n<!-- x:end -->\n\nprose after\n")
    write_between(doc, "<!-- x:begin -->", "<!-- x:end -->", "new table", "T")
    text = doc.read_text()
    assert "prose before" in text and "prose after" in text and "new table" in text and "old" not in text


def test_tiny_bench_run_through_real_envoy(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    args = ["--configs", "inline", "--workloads", "json-1,sse-16", "--duration", "1", "--repeats", "1"]
    rc = bench_main([*args, "--no-warm", "--no-wrk", "--out", str(out)])
    assert rc == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    got = {(r["config"], r["workload"]) for r in rows}
    assert got == {("plain", "json-1"), ("plain", "sse-16"), ("inline", "json-1"), ("inline", "sse-16")}
    for r in rows:
        assert r["requests"] > 0 and r["errors"] == 0 and r["non2xx"] == 0
        assert r["envoy_cpu_us"] > 0
        assert r["upstream_served"]["json" if r["workload"] == "json-1" else "sse_done"] >= r["requests"]
    inline = {r["workload"]: r for r in rows if r["config"] == "inline"}
    # The bench's "observed" is ai_log lines with the upstream's exact token counts; Envoy waited for
    # every answer (inline), so lines exist; their number is a measurement, not asserted here.
    assert inline["json-1"]["observed"] > 0 and inline["sse-16"]["observed"] > 0
    assert inline["sse-16"]["ttfb_ms"]["n"] == inline["sse-16"]["requests"]
    md = (out / "results.md").read_text()
    assert "### JSON chat, 1 connection" in md and "### Targets (issue 6)" in md
    assert "### Targets (issue 15)" in md


def test_noop_stop_costs_one_message_per_call_through_real_envoy(tmp_path: Path) -> None:
    """noop-stop (a shed call's floor) really ends each call at its request headers, untouched."""
    out = tmp_path / "bench"
    args = ["--configs", "noop,noop-stop", "--workloads", "json-1", "--duration", "1", "--repeats", "1"]
    assert bench_main([*args, "--no-warm", "--no-wrk", "--out", str(out)]) == 0
    rows = {r["config"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    for name in ("noop", "noop-stop"):
        r = rows[name]
        assert r["requests"] > 0 and r["errors"] == 0 and r["non2xx"] == 0
        assert r["upstream_served"]["json"] >= r["requests"]  # every call still reached the upstream
        assert r["envoy_ext_proc"].get("failure_mode_allowed", 0) == 0
    for name, per_call in (("noop", 4), ("noop-stop", 1)):
        r = rows[name]
        assert round(r["envoy_ext_proc"]["stream_msgs_sent"] / r["requests"]) == per_call, r["envoy_ext_proc"]
    assert rows["noop"]["observed_pct"] > 0 and rows["noop-stop"]["observed_pct"] is None


def test_setup_names_and_sidecar_config(tmp_path: Path) -> None:
    import pytest
    import yaml

    from gateway_stats.bench.stacks import SetUp, sidecar_config

    assert SetUp.parse("inline") == SetUp("inline")
    assert SetUp.parse("inline-w2-shed") == SetUp("inline", workers=2, shed=True)
    assert SetUp.parse("inline-lua-w4") == SetUp("inline-lua", workers=4)
    assert SetUp.parse("noop-unix") == SetUp("noop", unix=True)
    assert SetUp.parse("noop-stop") == SetUp("noop-stop")
    for bad in ("inlin", "noop-w2", "inline-w0", "plain-unix", "observe-fast"):
        with pytest.raises(ValueError):
            SetUp.parse(bad)
    assert report.label("observe-w2") == "Envoy + gateway-stats, observability mode (2 workers)"
    src = tmp_path / "c.yaml"
    src.write_text("use_default_attributes: true\ngateway_stats:\n  consumer_header: x-c\n")
    doc = yaml.safe_load(sidecar_config(src, tmp_path / "s.yaml", True).read_text())
    assert doc["gateway_stats"] == {"consumer_header": "x-c", "overload": {"enabled": True}}


def test_observed_latency_joins_ids_to_ai_log_lines(tmp_path: Path) -> None:
    from gateway_stats.bench.workloads import _observed_latency

    p = tmp_path / "access.log"
    line = '{"ai_log":"{\\"chat_id\\":\\"chatcmpl-%09d\\",\\"input_token\\":57}"}\n'
    p.write_text("".join(line % i for i in (0, 2, 3)) + '{"ai_log":"-"}\n')
    assert probes.logged_chat_ids(p, 0) == {0, 2, 3}
    per = {"ids": [0, 1, 2, 3], "latency_us": [1000, 50000, 2000, 3000]}
    out = _observed_latency(per, probes.logged_chat_ids(p, 0))
    assert out["unobserved_calls"] == 1 and out["observed_latency_ms"]["max"] == 3.0
    assert out["unobserved_latency_ms"]["p50"] == 50.0
    assert canned.json_response_for(b"000000007").count(b"chatcmpl-000000007") == 1


def test_issue15_targets_compare_same_repeat() -> None:
    rows = []
    for rep in range(3):
        rows += [
            _row("plain", "json-16", rep, 1.0, 10000, 80, None),
            _row("noop", "json-16", rep, 9.0, 1500, 300, 700.0 + rep),
            _row("inline-w2", "json-16", rep, 9.0, 1600 - rep, 300, 840.0),
        ]
    ts = {t.text: t for t in report.targets15(report.Summary(rows))}
    assert ts["inline-w2: JSON 16 conns throughput ≥ the naive no-op's"].met is True
    cpu = ts["inline-w2: sidecar CPU per JSON call (16 conns) ≤ 1.3 x the naive no-op's"]
    assert cpu.met is True and "(x1.20)" in cpu.measured


def test_hotpath_runs_warm_and_cold(capsys) -> None:  # type: ignore[no-untyped-def]
    from gateway_stats.bench import hotpath

    assert hotpath.main(["--calls", "5"]) == 0
    assert hotpath.main(["--calls", "5", "--cold"]) == 0
    warm, cold = capsys.readouterr().out.strip().splitlines()[-2:]
    assert warm.startswith("JSON call, 4 messages: ") and "evicted" not in warm
    assert "(caches evicted before each message)" in cold
