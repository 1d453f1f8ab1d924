"""`gateway-stats report --html FILE`: one self-contained page that opens offline.

No CDN, no external file: the charts are inline SVG drawn here (bars with `<title>` tooltips), the
style is inline, and a short inline script only adds table sorting and marks the page as rendered
(`<body data-rendered="1" data-marks="N">`, N = bars with data, which the browser test reads).
Charts: calls per day by model, cost per day by model, latency percentiles (p50/p95 of duration and
TTFT) by model, tokens in/out per day.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections import defaultdict
from decimal import Decimal
from typing import Any

from gateway_stats.records.report import HEADERS, NONE, Report, _cell, group_key, percentile
from gateway_stats.records.row import iso

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
W, H = 720, 260
ML, MR, MT, MB = 64, 150, 16, 48


def _esc(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _nice_max(v: float) -> float:
    """The axis top: 1, 2, 2.5 or 5 times a power of ten, at or above v."""
    if v <= 0:
        return 1.0
    exp = 10.0 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp * (1 + 1e-9):
            return m * exp
    return v


def _fmt(v: float) -> str:
    if v == int(v):
        return f"{int(v):,}"
    return f"{v:.6g}"


def bar_chart(
    title: str,
    categories: list[str],
    series: dict[str, list[float]],
    unit: str,
    *,
    stacked: bool = True,
    colors: dict[str, str] | None = None,
) -> str:
    """An SVG bar chart: one group per category, one bar (or stacked segment) per series."""
    ncat = max(1, len(categories))
    totals = (
        [sum(s[i] for s in series.values()) for i in range(len(categories))]
        if stacked
        else [max((s[i] for s in series.values()), default=0.0) for i in range(len(categories))]
    )
    top = _nice_max(max(totals, default=0.0))
    pw, ph = W - ML - MR, H - MT - MB
    out = [
        f'<figure class="chart"><figcaption>{_esc(title)}</figcaption>'
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" '
        f'aria-label="{_esc(title)}">'
    ]
    for i in range(5):  # grid and y labels
        v = top * i / 4
        y = MT + ph - ph * i / 4
        out.append(f'<line x1="{ML}" x2="{ML + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{ML - 6}" y="{y + 4:.1f}" class="ylab">{_esc(_fmt(v))}</text>')
    slot = pw / ncat
    names = list(series)
    bw = slot * 0.7 / (1 if stacked else max(1, len(names)))
    for ci, cat in enumerate(categories):
        x0 = ML + slot * ci + slot * 0.15
        base = 0.0
        for si, name in enumerate(names):
            v = series[name][ci]
            if v <= 0:
                continue
            hgt = ph * v / top
            x = x0 if stacked else x0 + bw * si
            y = MT + ph - hgt - (ph * base / top if stacked else 0)
            color = (colors or {}).get(name) or PALETTE[si % len(PALETTE)]
            tip = f"{cat} - {name}: {_fmt(v)} {unit}".strip()
            out.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{max(hgt, 0.5):.1f}" '
                f'fill="{color}" data-value="{_esc(_fmt(v))}"><title>{_esc(tip)}</title></rect>'
            )
            if stacked:
                base += v
        label = cat if len(cat) <= 14 else cat[:13] + "…"
        out.append(f'<text x="{x0 + slot * 0.35:.1f}" y="{MT + ph + 16}" class="xlab">{_esc(label)}</text>')
    for si, name in enumerate(names):  # legend
        y = MT + 14 * si
        color = (colors or {}).get(name) or PALETTE[si % len(PALETTE)]
        out.append(
            f'<rect x="{W - MR + 12}" y="{y}" width="10" height="10" fill="{color}"/>'
            f'<text x="{W - MR + 26}" y="{y + 9}" class="legend">{_esc(name[:22])}</text>'
        )
    if not any(t > 0 for t in totals):
        out.append(f'<text x="{ML + pw / 2}" y="{MT + ph / 2}" class="empty">no data</text>')
    out.append(f'<text x="{ML - 50}" y="{MT - 4}" class="unit">{_esc(unit)}</text></svg></figure>')
    return "".join(out)


def _per_day_by_model(
    rows: list[dict[str, Any]], value: Any, order: list[str]
) -> tuple[list[str], dict[str, list[float]]]:
    acc: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    days: set[str] = set()
    for r in rows:
        day = group_key(r, "day")
        model = group_key(r, "model")
        days.add(day)
        v = value(r)
        if v:
            acc[model][day] += float(v)
    cats = sorted(days)
    models = [m for m in order if m in acc]  # the same order (and colours) in every chart
    if len(models) > len(PALETTE):  # keep the chart readable: the rest as "other"
        other: dict[str, float] = defaultdict(float)
        for m in models[len(PALETTE) - 1 :]:
            for d, v in acc[m].items():
                other[d] += v
        models = [*models[: len(PALETTE) - 1], "other"]
        acc["other"] = other
    return cats, {m: [acc[m].get(d, 0.0) for d in cats] for m in models}


def _latency_by_model(rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, list[float]]]:
    dur: dict[str, list[int]] = defaultdict(list)
    ttft: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        m = group_key(r, "model")
        if r.get("duration_ms") is not None:
            dur[m].append(r["duration_ms"])
        if r.get("stream") and r.get("first_content_ms") is not None:
            ttft[m].append(r["first_content_ms"])
    models = sorted(dur, key=lambda m: -len(dur[m]))[:12]
    series = {
        "p50 latency": [float(percentile(dur[m], 0.5) or 0) for m in models],
        "p95 latency": [float(percentile(dur[m], 0.95) or 0) for m in models],
        "p50 TTFT": [float(percentile(ttft[m], 0.5) or 0) for m in models],
        "p95 TTFT": [float(percentile(ttft[m], 0.95) or 0) for m in models],
    }
    return models, series


def _tokens_per_day(rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, list[float]]]:
    tin: dict[str, float] = defaultdict(float)
    tout: dict[str, float] = defaultdict(float)
    for r in rows:
        d = group_key(r, "day")
        tin[d] += r.get("input_tokens") or 0
        tout[d] += r.get("output_tokens") or 0
    cats = sorted(set(tin) | set(tout))
    return cats, {"input": [tin[d] for d in cats], "output": [tout[d] for d in cats]}


STYLE = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px}p.meta{color:#666;margin:0 0 16px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:16px}
figure.chart{margin:0;border:1px solid #e4e4e4;border-radius:6px;padding:8px}
figcaption{font-weight:600;margin-bottom:4px}svg{width:100%;height:auto}
.grid{stroke:#eee}.ylab{font-size:11px;text-anchor:end;fill:#666}.xlab{font-size:11px;text-anchor:middle;fill:#444}
.legend{font-size:11px;fill:#333}.unit{font-size:11px;fill:#666}.empty{font-size:13px;fill:#999;text-anchor:middle}
rect.bar:hover{opacity:.75}
table{border-collapse:collapse;margin-top:20px;font-variant-numeric:tabular-nums}
th,td{padding:4px 10px;border-bottom:1px solid #eee;text-align:right}
th:first-child,td:first-child{text-align:left}
th{cursor:pointer;background:#fafafa;position:sticky;top:0}
tr.total td{font-weight:700;border-top:2px solid #ccc}
"""

SCRIPT = """
(function(){
  var table=document.getElementById('groups');
  var heads=table.querySelectorAll('th');
  heads.forEach(function(th,col){
    th.addEventListener('click',function(){
      var body=table.tBodies[0];
      var rows=Array.prototype.slice.call(body.rows);
      var dir=th.getAttribute('data-dir')==='asc'?-1:1;
      th.setAttribute('data-dir',dir===1?'asc':'desc');
      rows.sort(function(a,b){
        var x=a.cells[col].getAttribute('data-sort'),y=b.cells[col].getAttribute('data-sort');
        var nx=parseFloat(x),ny=parseFloat(y);
        if(!isNaN(nx)&&!isNaN(ny)){return (nx-ny)*dir;}
        return x<y?-dir:x>y?dir:0;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
  var marks=0;
  document.querySelectorAll('rect.bar').forEach(function(r){
    if(parseFloat(r.getAttribute('data-value'))>0){marks++;}
  });
  document.body.setAttribute('data-marks',String(marks));
  document.body.setAttribute('data-rendered','1');
})();
"""


def _sort_value(name: str, v: Any) -> str:
    if name == "cost":
        return str(sum((Decimal(x) for x in v.values()), Decimal(0))) if v else "-1"
    return "-1" if v is None else str(v)


def render(report: Report, title: str = "gateway-stats report") -> str:
    rows = report.rows
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[group_key(r, "model")] += 1
    order = sorted(counts, key=lambda m: (-counts[m], m))
    colors = {m: PALETTE[i] for i, m in enumerate(order[: len(PALETTE) - 1])}
    colors["other"] = PALETTE[-1]
    cats, calls = _per_day_by_model(rows, lambda r: 1, order)
    _, cost = _per_day_by_model(rows, lambda r: r.get("cost"), order)
    currencies = sorted({str(r["currency"]) for r in rows if r.get("cost") is not None and r.get("currency")})
    lat_models, lat = _latency_by_model(rows)
    tcats, tokens = _tokens_per_day(rows)
    cost_unit = "/".join(c for c in currencies if c) or "cost"
    charts = [
        bar_chart("Calls per day, by model", cats, calls, "calls", colors=colors),
        bar_chart("Cost per day, by model", cats, cost, cost_unit, colors=colors),
        bar_chart("Latency percentiles by model (ms)", lat_models, lat, "ms", stacked=False),
        bar_chart("Tokens per day", tcats, tokens, "tokens"),
    ]
    span = f"since {iso(report.start)}" if report.start else "all time"
    if report.end:
        span += f" until {iso(report.end)}"
    head = "".join(f"<th>{_esc(h)}</th>" for h, _ in HEADERS)
    body = []
    for g in report.groups:
        f = g.figures()
        cells = "".join(
            f'<td data-sort="{_esc(_sort_value(n, f[n]))}">{_esc(_cell(n, f[n]))}</td>' for _, n in HEADERS
        )
        body.append(f'<tr><td data-sort="{_esc(g.key)}">{_esc(g.key)}</td>{cells}</tr>')
    tf = report.total.figures()
    foot = "".join(f"<td>{_esc(_cell(n, tf[n]))}</td>" for _, n in HEADERS)
    unpriced = (
        f"<p class='meta'>{report.total.unpriced} of {report.total.calls} calls have no price.</p>"
        if report.total.unpriced
        else ""
    )
    generated = iso(dt.datetime.now(dt.UTC))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{_esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{_esc(title)}</h1><p class='meta'>{report.total.calls} calls, {span}, from "
        f"{_esc(report.source)}; generated {generated}. Missing values are shown as {NONE}.</p>"
        f"<div class='charts'>{''.join(charts)}</div>"
        f"<table id='groups'><thead><tr><th>{_esc(report.by)}</th>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody><tfoot><tr class='total'><td>total</td>{foot}</tr></tfoot></table>"
        f"{unpriced}<script>{SCRIPT}</script></body></html>\n"
    )
