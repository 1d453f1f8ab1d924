"""`gateway-stats report`: calls, errors, tokens, cost and latency percentiles, grouped, for a person.

Definitions (docs/records.md; the tests check them against hand-written SQL on the same rows):
* group key: `model` = response model, else request model; `route`; `consumer`; `day` = UTC date of `ts`.
  A missing value is shown as `(none)`.
* calls = rows; errors % = rows with `outcome = 'error'` / calls x 100 (aborted streams are not errors);
* tokens in / out = sums of `input_tokens` / `output_tokens` (nulls count as nothing);
* cost = exact sum of `cost` per currency (unpriced rows are left out and counted as `unpriced`);
* p50 / p95 latency = nearest-rank percentiles of `duration_ms` (the value at rank ceil(p x n) in
  ascending order, n = rows with a duration); TTFT = the same over `first_content_ms` of streamed calls.
* satisfaction = likes - dislikes of the `feedback` rows joined to the group's calls (by response id,
  else request id); rated % = calls with at least one like or dislike x 100 / calls;
* languages = the detected languages of the group's calls, most frequent first, each with its share of
  the calls that have one (at most three shown).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from gateway_stats.records.read import Filters, fetch
from gateway_stats.records.row import decimal_text, iso

BY = ("model", "route", "consumer", "day")
NONE = "(none)"
COLUMNS = (
    "ts",
    "route",
    "consumer",
    "request_model",
    "response_model",
    "stream",
    "outcome",
    "input_tokens",
    "output_tokens",
    "cost",
    "currency",
    "duration_ms",
    "first_content_ms",
    "request_id",
    "response_id",
    "language",
)
FEEDBACK_COLUMNS = ("ts", "response_id", "request_id", "like_count", "dislike_count")


def percentile(values: Sequence[int], p: float) -> int | None:
    """Nearest rank: the value at rank ceil(p * n) of the sorted values (None if there are none)."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(p * len(s)) - 1)]


def group_key(r: dict[str, Any], by: str) -> str:
    if by == "model":
        v = r.get("response_model") or r.get("request_model")
    elif by == "day":
        ts = r.get("ts")
        v = ts.astimezone(dt.UTC).date().isoformat() if isinstance(ts, dt.datetime) else None
    else:
        v = r.get(by)
    return str(v) if v not in (None, "") else NONE


@dataclass
class Group:
    key: str
    calls: int = 0
    errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: dict[str, Decimal] = field(default_factory=dict)
    unpriced: int = 0
    durations: list[int] = field(default_factory=list)
    ttfts: list[int] = field(default_factory=list)
    likes: int = 0
    dislikes: int = 0
    rated: int = 0  # calls with at least one like or dislike
    languages: Counter[str] = field(default_factory=Counter)

    def add(self, r: dict[str, Any], rating: tuple[int, int] | None = None) -> None:
        """One call row; `rating` = (likes, dislikes) of the feedback joined to it."""
        if rating is not None:
            self.likes += rating[0]
            self.dislikes += rating[1]
            if rating[0] or rating[1]:
                self.rated += 1
        if r.get("language"):
            self.languages[r["language"]] += 1
        self.calls += 1
        if r.get("outcome") == "error":
            self.errors += 1
        self.tokens_in += r.get("input_tokens") or 0
        self.tokens_out += r.get("output_tokens") or 0
        c = r.get("cost")
        if c is None:
            self.unpriced += 1
        else:
            cur = r.get("currency") or ""
            self.cost[cur] = self.cost.get(cur, Decimal(0)) + c
        if r.get("duration_ms") is not None:
            self.durations.append(r["duration_ms"])
        if r.get("stream") and r.get("first_content_ms") is not None:
            self.ttfts.append(r["first_content_ms"])

    @property
    def errors_pct(self) -> float:
        return round(100.0 * self.errors / self.calls, 1) if self.calls else 0.0

    @property
    def languages_text(self) -> str | None:
        n = sum(self.languages.values())
        if not n:
            return None
        top = sorted(self.languages.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        return ", ".join(f"{lang} {round(100 * c / n)}%" for lang, c in top)

    def figures(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "calls": self.calls,
            "errors": self.errors,
            "errors_pct": self.errors_pct,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost": {cur: decimal_text(v) for cur, v in sorted(self.cost.items())},
            "unpriced": self.unpriced,
            "p50_ms": percentile(self.durations, 0.50),
            "p95_ms": percentile(self.durations, 0.95),
            "ttft_p50_ms": percentile(self.ttfts, 0.50),
            "ttft_p95_ms": percentile(self.ttfts, 0.95),
            "likes": self.likes,
            "dislikes": self.dislikes,
            "satisfaction": self.likes - self.dislikes if (self.likes or self.dislikes) else None,
            "rated_pct": round(100.0 * self.rated / self.calls, 1) if self.calls else 0.0,
            "languages": self.languages_text,
        }


@dataclass
class Report:
    source: str
    by: str
    start: dt.datetime | None
    end: dt.datetime | None
    groups: list[Group]
    total: Group
    rows: list[dict[str, Any]]  # what was read, for the HTML charts

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "by": self.by,
            "since": iso(self.start) if self.start else None,
            "until": iso(self.end) if self.end else None,
            "rows": [g.figures() for g in self.groups],
            "total": self.total.figures(),
        }


def ratings(feedback: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """(likes, dislikes) by `r:<response id>` and `q:<request id>` of the rated call."""
    out: dict[str, tuple[int, int]] = {}
    for f in feedback:
        key = (
            f"r:{f['response_id']}"
            if f.get("response_id")
            else f"q:{f['request_id']}"
            if f.get("request_id")
            else None
        )
        if key is None:
            continue
        likes, dislikes = out.get(key, (0, 0))
        out[key] = (likes + (f.get("like_count") or 0), dislikes + (f.get("dislike_count") or 0))
    return out


def summarise(
    rows: Iterable[dict[str, Any]], by: str, feedback: Iterable[Mapping[str, Any]] = ()
) -> tuple[list[Group], Group]:
    if by not in BY:
        raise ValueError(f"--by must be one of {', '.join(BY)}, got {by!r}")
    groups: dict[str, Group] = {}
    total = Group("total")
    rated = ratings(feedback)
    for r in rows:
        k = group_key(r, by)
        g = groups.get(k)
        if g is None:
            g = groups[k] = Group(k)
        rating = None
        if rated:
            a = rated.get(f"r:{r.get('response_id')}") if r.get("response_id") else None
            b = rated.get(f"q:{r.get('request_id')}") if r.get("request_id") else None
            if a or b:
                rating = ((a or (0, 0))[0] + (b or (0, 0))[0], (a or (0, 0))[1] + (b or (0, 0))[1])
        g.add(r, rating)
        total.add(r, rating)
    if by == "day":
        ordered = sorted(groups.values(), key=lambda g: g.key)
    else:
        ordered = sorted(groups.values(), key=lambda g: (-g.calls, g.key))
    return ordered, total


def build(
    source: str | Path, by: str = "model", start: dt.datetime | None = None, end: dt.datetime | None = None
) -> Report:
    rows = fetch(source, Filters(start=start, end=end), columns=COLUMNS)
    groups, total = summarise(rows, by, _feedback(source, start))
    return Report(str(source), by, start, end, groups, total, rows)


def _feedback(source: str | Path, start: dt.datetime | None) -> list[dict[str, Any]]:
    """Feedback rows from the call window's start on (feedback comes after the call it rates). A store
    written before the feedback table existed has none."""
    try:
        return fetch(source, Filters(start=start), table="feedback", columns=FEEDBACK_COLUMNS)
    except Exception as exc:
        if "feedback" not in str(exc) and "no such table" not in str(exc).lower():
            raise
        return []


# ------------------------------------------------------------------------------------ rendering


def cost_text(cost: dict[str, Any], places: int | None = None) -> str:
    if not cost:
        return "-"
    parts = []
    for cur, v in sorted(cost.items()):
        d = Decimal(v)
        d = d.quantize(Decimal(1).scaleb(-places)) if places is not None else d.normalize()
        parts.append(f"{decimal_text(d)} {cur}".strip())
    return " + ".join(parts)


HEADERS = (
    ("calls", "calls"),
    ("errors %", "errors_pct"),
    ("tokens in", "tokens_in"),
    ("tokens out", "tokens_out"),
    ("cost", "cost"),
    ("p50 ms", "p50_ms"),
    ("p95 ms", "p95_ms"),
    ("TTFT p50 ms", "ttft_p50_ms"),
    ("TTFT p95 ms", "ttft_p95_ms"),
    ("satisfaction", "satisfaction"),
    ("rated %", "rated_pct"),
    ("languages", "languages"),
)


def _cell(name: str, v: Any, places: int | None = None) -> str:
    if name == "cost":
        return cost_text(v, places)
    if v is None:
        return "-"
    if name in ("errors_pct", "rated_pct"):
        return f"{v:.1f}"
    if name == "satisfaction":
        return f"{v:+d}" if v else "0"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def render_table(report: Report, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    if console is None:  # piped: wide enough for every column rather than rich's 80
        import shutil
        import sys

        console = Console(width=None if sys.stdout.isatty() else max(200, shutil.get_terminal_size().columns))
    span = f"since {iso(report.start)}" if report.start else "all time"
    if report.end:
        span += f" until {iso(report.end)}"
    t = Table(title=f"gateway-stats records by {report.by} ({span}) - {report.source}", title_justify="left")
    t.add_column(report.by)
    for h, _ in HEADERS:
        t.add_column(h, justify="right")
    for g in report.groups:
        f = g.figures()
        t.add_row(g.key, *(_cell(n, f[n]) for _, n in HEADERS))
    f = report.total.figures()
    t.add_section()
    t.add_row("total", *(_cell(n, f[n]) for _, n in HEADERS), style="bold")
    console.print(t)
    if report.total.unpriced:
        console.print(f"{report.total.unpriced} of {report.total.calls} calls have no price (cost left out).")


def to_json(report: Report) -> str:
    return orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode()


def to_csv(report: Report) -> str:
    """One line per group then `total`; cost is the exact sum, currency beside it (several: `;`-joined)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    names = [n for _, n in HEADERS]
    w.writerow([report.by, *names, "currency", "unpriced"])
    for g in [*report.groups, report.total]:
        f = g.figures()
        cells: list[Any] = [f["key"]]
        for n in names:
            if n == "cost":
                cells.append(";".join(f["cost"].values()))
            else:
                cells.append("" if f[n] is None else f[n])
        cells += [";".join(f["cost"].keys()), f["unpriced"]]
        w.writerow(cells)
    return out.getvalue()
