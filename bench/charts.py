"""The benchmark page's charts and their tables, drawn from bench/results.json at build time.

A mkdocs hook (``hooks:`` in mkdocs.yml): on the page that includes bench/README.md, each
``<!-- chart: NAME -->`` comment becomes a figure, an inline SVG chart drawn from the
figures the bench scripts recorded, followed by a table of the same numbers and where they
come from. No dependency, nothing fetched when the page is read. A chart whose figures are
missing is a build warning (so an error under ``mkdocs build --strict``).
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CHARTS", "on_page_content", "render_charts"]

RESULTS = Path(__file__).resolve().parent / "results.json"
_PLACEHOLDER = re.compile(r"<!--\s*chart:\s*(?P<name>[\w-]+)\s*-->")
log = logging.getLogger("mkdocs.hooks.bench_charts")

Entry = dict[str, Any]
# Colours that read on the light and the dark palette alike; text uses currentColor.
_COLOURS = ("#7986cb", "#ffa726", "#26a69a", "#ef5350")
_WIDTH = 760
_FONT = 'font-size="12" fill="currentColor"'


class MissingFigures(LookupError):
    """A chart's figures are not in bench/results.json."""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _nice_ceiling(value: float) -> tuple[float, float]:
    """An axis end at or above ``value`` and a tick step (1, 2 or 5 times a power of 10)."""
    if value <= 0:
        return 1.0, 0.2
    raw = value / 5
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return math.ceil(value / step) * step, step


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}".removesuffix(".0")
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _legend(names: Sequence[str], x: float, y: float) -> list[str]:
    parts = []
    for index, name in enumerate(names):
        left = x + index * 190
        colour = _COLOURS[index % len(_COLOURS)]
        parts.append(f'<rect x="{left}" y="{y - 10}" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{left + 18}" y="{y}" {_FONT}>{_esc(name)}</text>')
    return parts


def bar_chart(
    title: str, groups: Sequence[tuple[str, Sequence[float]]], series: Sequence[str], unit: str
) -> str:
    """Horizontal grouped bars: one group per label, one bar per series, values labelled."""
    left, right, top, bar, gap = 210, 70, 52, 16, 14
    height = top + len(groups) * (len(series) * bar + gap) + 44
    end, step = _nice_ceiling(max(value for _, values in groups for value in values))
    plot = _WIDTH - left - right

    def x_of(value: float) -> float:
        return left + plot * value / end

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {height}" role="img" '
        f'aria-label="{_esc(title)}">',
        f'<text x="0" y="16" font-size="14" font-weight="bold" fill="currentColor">'
        f"{_esc(title)}</text>",
        *_legend(series, left, 38),
    ]
    bottom = height - 40
    for index in range(round(end / step) + 1):
        tick = index * step
        x = x_of(tick)
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{bottom}" '
            'stroke="currentColor" stroke-opacity="0.15"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle" {_FONT}>'
            f"{_esc(_number(tick))}</text>"
        )
    parts.append(
        f'<text x="{left + plot / 2}" y="{bottom + 32}" text-anchor="middle" {_FONT}>'
        f"{_esc(unit)}</text>"
    )
    y = top
    for label, values in groups:
        group_height = len(series) * bar
        parts.append(
            f'<text x="{left - 8}" y="{y + group_height / 2 + 4}" text-anchor="end" {_FONT}>'
            f"{_esc(label)}</text>"
        )
        for index, value in enumerate(values):
            colour = _COLOURS[index % len(_COLOURS)]
            width = max(x_of(value) - left, 1)
            parts.append(
                f'<rect x="{left}" y="{y + 1}" width="{width:.1f}" height="{bar - 2}" '
                f'fill="{colour}"><title>{_esc(series[index])}: {_esc(_number(value))} '
                f"{_esc(unit)}</title></rect>"
            )
            parts.append(
                f'<text x="{left + width + 4:.1f}" y="{y + bar - 4}" font-size="11" '
                f'fill="currentColor">{_esc(_number(value))}</text>'
            )
            y += bar
        y += gap
    parts.append("</svg>")
    return "".join(parts)


def step_chart(
    title: str,
    lines: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    x_unit: str,
    y_unit: str,
) -> str:
    """Step lines of (x, y) points, drawn in order; the first series dashed."""
    left, right, top, bottom_pad = 56, 24, 52, 44
    height = 330
    x_end, x_step = _nice_ceiling(max(x for _, points in lines for x, _ in points))
    y_end, y_step = _nice_ceiling(max(y for _, points in lines for _, y in points))
    bottom = height - bottom_pad

    def at(x: float, y: float) -> str:
        px = left + (_WIDTH - left - right) * x / x_end
        py = bottom - (bottom - top) * y / y_end
        return f"{px:.1f},{py:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {height}" role="img" '
        f'aria-label="{_esc(title)}">',
        f'<text x="0" y="16" font-size="14" font-weight="bold" fill="currentColor">'
        f"{_esc(title)}</text>",
        *_legend([name for name, _ in lines], left, 38),
    ]
    for index in range(round(x_end / x_step) + 1):
        tick = index * x_step
        x, _ = at(tick, 0).split(",")
        parts.append(
            f'<line x1="{x}" y1="{top}" x2="{x}" y2="{bottom}" stroke="currentColor" '
            'stroke-opacity="0.15"/>'
            f'<text x="{x}" y="{bottom + 16}" text-anchor="middle" {_FONT}>'
            f"{_esc(_number(tick))}</text>"
        )
    for index in range(round(y_end / y_step) + 1):
        tick = index * y_step
        _, y = at(0, tick).split(",")
        parts.append(
            f'<line x1="{left}" y1="{y}" x2="{_WIDTH - right}" y2="{y}" stroke="currentColor" '
            'stroke-opacity="0.15"/>'
            f'<text x="{left - 6}" y="{float(y) + 4:.1f}" text-anchor="end" {_FONT}>'
            f"{_esc(_number(tick))}</text>"
        )
    parts.append(
        f'<text x="{(_WIDTH + left) / 2}" y="{height - 6}" text-anchor="middle" {_FONT}>'
        f"{_esc(x_unit)}</text>"
        f'<text x="12" y="{(top + bottom) / 2}" text-anchor="middle" {_FONT} '
        f'transform="rotate(-90 12 {(top + bottom) / 2})">{_esc(y_unit)}</text>'
    )
    for index, (_, points) in enumerate(lines):
        steps: list[str] = []
        previous_y = 0.0
        for moment, count in points:
            steps += [at(moment, previous_y), at(moment, count)]
            previous_y = count
        colour = _COLOURS[index % len(_COLOURS)]
        dash = ' stroke-dasharray="6 4"' if index == 0 else ""
        parts.append(
            f'<polyline points="{" ".join(steps)}" fill="none" stroke="{colour}" '
            f'stroke-width="2"{dash}/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_esc(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _provenance(entries: Sequence[Entry]) -> str:
    items = "".join(
        f"<li><code>{_esc(entry['command'])}</code>: {_esc(entry['recorded'])}, commit "
        f"{_esc(entry['commit'])}, Python {_esc(entry['python'])}, {_esc(entry['machine'])}"
        "</li>"
        for entry in entries
    )
    return f'<div class="bench-source">From bench/results.json, recorded by<ul>{items}</ul></div>'


def _figure(svg: str, caption: str, table: str, entries: Sequence[Entry]) -> str:
    return (
        f'<figure class="bench-chart">{svg}<figcaption>{_esc(caption)}</figcaption></figure>'
        f"{table}{_provenance(entries)}"
    )


def _entries(data: dict[str, Any], bench: str) -> list[Entry]:
    found = [entry for entry in data.get("entries", {}).values() if entry["bench"] == bench]
    if not found:
        raise MissingFigures(f"bench/results.json has no figures of {bench}: run bench/{bench}.py")
    return found


def _allowance(windows: Sequence[Sequence[float]], until: float) -> list[tuple[float, float]]:
    """The most calls a server counting ``limit`` per ``period`` admits from 0 to each step."""
    moments = sorted(
        {k * period for limit, period in windows for k in range(int(until / period) + 1)}
    )
    return [
        (moment, min(limit * (math.floor(moment / period + 1e-9) + 1) for limit, period in windows))
        for moment in moments
    ]


def pacing(data: dict[str, Any]) -> str:
    """Answers received over time against what the server's windows admit."""
    parts = []
    entries = sorted(_entries(data, "bench_pacing"), key=lambda e: e["case"]["backend"])
    for entry in entries:
        case, figures = entry["case"], entry["figures"]
        answered = figures["answered_s"]
        calls = len(answered)
        until = max(answered[-1], figures["ideal_s"])
        allowance = [(x, min(y, calls)) for x, y in _allowance(figures["windows"], until)]
        received = [(moment, index + 1) for index, moment in enumerate(answered)]
        title = f"{calls} list calls at {case['rate']} ({case['backend']})"
        svg = step_chart(
            title,
            [("most the server admits", allowance), ("answers received", received)],
            "seconds since the first call",
            "calls",
        )
        caption = (
            f"{title}: the client's answers (solid) stay under the server's sliding "
            f"window (dashed); {figures['http_429']} answers were 429."
        )
        table = _table(
            ["calls", "limit", "backend", "elapsed", "N/R", "bound (N/R + 1 window)", "429s"],
            [
                [
                    calls,
                    case["rate"],
                    case["backend"],
                    f"{figures['elapsed_s']:.2f} s",
                    f"{figures['ideal_s']:.2f} s",
                    f"{figures['bound_s']:.2f} s",
                    figures["http_429"],
                ]
            ],
        )
        parts.append(_figure(svg, caption, table, [entry]))
    return "".join(parts)


def provision(data: dict[str, Any]) -> str:
    """Provisioning throughput against the server's limit and the pacing ceiling."""
    entries = sorted(
        _entries(data, "bench_provision"),
        key=lambda e: (e["case"]["rate"], e["case"]["specs"], e["case"]["backend"]),
    )
    groups, rows = [], []
    for entry in entries:
        case, runs = entry["case"], entry["figures"]["runs"]
        rate = case["rate"]
        achieved = statistics.median(run["calls_per_s"] for run in runs)
        label = f"{case['specs']} specs, {rate}/s, {case['backend']}"
        groups.append((label, [rate, rate / 1.05, achieved]))
        elapsed = [run["elapsed_s"] for run in runs]
        rows.append(
            [
                case["specs"],
                f"{rate}/second",
                case["backend"],
                " / ".join(f"{value:.2f} s" for value in elapsed),
                f"{runs[0]['ideal_s']:.2f} s",
                f"{achieved:.1f}",
                " / ".join(str(run["calls"]) for run in runs),
                " / ".join(str(run["http_429"]) for run in runs),
                " / ".join(str(run["users_on_server"]) for run in runs),
            ]
        )
    svg = bar_chart(
        "Provisioning throughput",
        groups,
        ["server's limit R", "pacing ceiling R / 1.05", "achieved"],
        "calls/s",
    )
    caption = (
        "Calls a second of provision() against an emulator admitting R a second. The "
        "limiter's steady pace is R / 1.05 (R calls per second and its 5% margin); the "
        "first second's R calls go at once, so a short run can pass it slightly. Where "
        "several runs were made, the median."
    )
    table = _table(
        ["N", "R", "backend", "elapsed", "expected", "calls/s", "calls", "429s", "users"], rows
    )
    return _figure(svg, caption, table, entries)


def list_cost(data: dict[str, Any]) -> str:
    """CPU time per user of a list call: raw httpx, the typed floor, the SDK."""
    entries = [
        entry
        for entry in _entries(data, "bench_overhead")
        if entry["case"]["gc"] == "on" and entry["case"]["backend"] == "asyncio"
    ]
    if not entries:
        raise MissingFigures("bench/results.json has no bench_overhead figures of asyncio, gc on")
    entries.sort(key=lambda e: e["case"]["transport"] != "mock")
    names = {"mock": "MockTransport", "http": "loopback HTTP"}
    sides = ("raw", "typed", "sdk")
    groups, rows = [], []
    for entry in entries:
        transport = names[entry["case"]["transport"]]
        lists = sorted(
            (figures for figures in entry["figures"]["cpu"].values() if figures["users"] > 1),
            key=lambda figures: figures["users"],
        )
        if len(lists) < 2:
            raise MissingFigures("bench_overhead recorded fewer than two list sizes")
        small, large = lists[0], lists[-1]
        extra = large["users"] - small["users"]
        groups.append(
            (
                f"{transport}",
                [(large[f"{side}_s"] - small[f"{side}_s"]) / extra * 1e9 for side in sides],
            )
        )
        for call, figures in entry["figures"]["cpu"].items():
            users = figures["users"]
            if users <= 1:
                continue
            per_user = [figures[f"{side}_s"] / users * 1e9 for side in sides]
            low, high = figures["sdk/raw"][1:]
            rows.append(
                [
                    call,
                    transport,
                    *(f"{value:,.0f} ns" for value in per_user),
                    f"{figures['sdk/raw'][0]:.2f}x ({low:.2f}-{high:.2f})",
                    f"{figures['typed/raw'][0]:.2f}x",
                ]
            )
    svg = bar_chart(
        "What each user of a list answer costs (CPU)",
        groups,
        ["raw httpx + json.loads", "typed floor", "sarv-async"],
        "ns per user",
    )
    caption = (
        "The CPU time of the largest list call less that of the smallest, over the users "
        "between them: what one more user costs, without the call's fixed cost (asyncio, "
        "medians of interleaved rounds). The typed floor builds the same objects as the "
        "SDK with no check at all. The table: each call's CPU time over its users."
    )
    table = _table(
        [
            "call",
            "transport",
            "raw per user",
            "typed floor",
            "SDK",
            "SDK vs raw (min-max)",
            "typed vs raw",
        ],
        rows,
    )
    return _figure(svg, caption, table, entries)


CHARTS: dict[str, Callable[[dict[str, Any]], str]] = {
    "pacing": pacing,
    "provision": provision,
    "list-cost": list_cost,
}


def render_charts(text: str, data: dict[str, Any]) -> str:
    """``text`` with each ``<!-- chart: NAME -->`` replaced by its figure."""

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in CHARTS:
            raise MissingFigures(f"no chart is named {name!r}; known: {', '.join(CHARTS)}")
        return CHARTS[name](data)

    return _PLACEHOLDER.sub(replace, text)


def on_page_content(html_text: str, **_: Any) -> str:
    """mkdocs hook: draw the charts of any page that asks for one."""
    if not _PLACEHOLDER.search(html_text):
        return html_text
    data = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
    try:
        return render_charts(html_text, data)
    except MissingFigures as error:
        log.warning("%s", error)
        return html_text
