"""Report renderers: ``RENDERERS[format](report, color=False) -> str`` for text, json, markdown, html.

* text: for a terminal (ANSI colours only when asked, i.e. when stdout is a TTY);
* json: the contract object of design.md (:meth:`Report.to_json`);
* markdown: for a ticket;
* html: one self-contained file (inline CSS and SVG, no script, no network, and a
  Content-Security-Policy that forbids both), every value passed through :func:`html.escape`.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections import Counter
from collections.abc import Callable

from analyzer.model import CAUSES, Report, iso

Renderer = Callable[..., str]
RENDERERS: dict[str, Renderer] = {}


def renderer(name: str) -> Callable[[Renderer], Renderer]:
    def register(fn: Renderer) -> Renderer:
        RENDERERS[name] = fn
        return fn

    return register


def _value(e) -> str:
    if e.value is None:
        return "-"
    if e.unit == "ratio":
        return f"{e.value:.2%}"
    if e.unit == "s":
        return f"{e.value:g} s"
    return f"{e.value:g}"


def _limit(e) -> str:
    if e.unit == "ratio":
        return f"{e.limit:.2%}"
    return f"{e.limit:g} {e.unit}"


def _verdict(e) -> str:
    return "BREACHED" if e.breached else ("not evaluated" if e.breached is None else "ok")


def headline(report: Report) -> str:
    """One line: escalate or not, and how many incidents of which causes."""
    causes = Counter(i.cause for i in report.incidents)
    what = ", ".join(f"{c} {n}" for c, n in sorted(causes.items())) or "no incidents"
    if report.escalate:
        rules = ", ".join(e.rule for e in report.breached)
        return f"ESCALATE ({rules}): {len(report.incidents)} incident(s): {what}"
    return f"nothing to escalate: {len(report.incidents)} incident(s): {what}"


@renderer("json")
def render_json(report: Report, color: bool = False) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"


@renderer("text")
def render_text(report: Report, color: bool = False) -> str:
    def style(text: str, fg: str | None = None, bold: bool = False) -> str:
        if not color:
            return text
        codes = {"red": "31", "green": "32", "yellow": "33", "cyan": "36", "dim": "2"}
        seq = ([codes[fg]] if fg else []) + (["1"] if bold else [])
        return f"\x1b[{';'.join(seq)}m{text}\x1b[0m" if seq else text

    lines = []
    win = report.to_json()["window"]
    lines.append(style(headline(report), "red" if report.escalate else "green", bold=True))
    c = report.counts
    lines.append(f"window {win['start']} .. {win['end']}; {c['frames']} frames, {c['log_records']} log records, "
                 f"{c['postgres_changes']} postgres_changes ({c['invalid_payloads']} invalid)")
    lines.append("")
    lines.append(style("Escalations", bold=True))
    for e in report.escalations:
        colour = "red" if e.breached else ("yellow" if e.breached is None else "green")
        since = f" since {iso(e.since)}" if e.since and e.breached else ""
        ids = f" [{', '.join(e.incidents)}]" if e.incidents else ""
        lines.append(f"  {style(_verdict(e).ljust(13), colour)} {e.rule}: {_value(e)} (limit {_limit(e)}){since}{ids}")
        if e.reason:
            lines.append(style(f"                {e.reason}", "dim"))
    lines.append("")
    lines.append(style(f"Incidents ({len(report.incidents)})", bold=True))
    for inc in report.incidents:
        topics = f" {', '.join(sorted(inc.topics))}" if inc.topics else ""
        lines.append(f"  {style(inc.id, 'cyan')} {style(inc.cause, bold=True)}/{inc.detail} x{inc.count} "
                     f"{iso(inc.start)} .. {iso(inc.end)}{topics}")
        lines.append(f"      {inc.summary}")
        shown = inc.to_json()["evidence"]
        for ev in shown[:5]:
            where = f"offset {ev['offset']}" if "offset" in ev else f"seq {ev['seq']}"
            lines.append(style(f"      {ev['ts']} {ev['table']}/{ev['source']} {where}: {_one_line(ev['text'], 110)}", "dim"))
        if inc.evidence_count > 5:
            lines.append(style(f"      ... {inc.evidence_count - 5} more evidence row(s) (--format json)", "dim"))
    if report.unclassified:
        lines.append("")
        lines.append(style(f"Unclassified error records ({sum(u.count for u in report.unclassified)})", bold=True))
        for u in report.unclassified:
            lines.append(f"  {u.count:>5} x {u.source}/{u.level}: {_one_line(u.text, 100)}  ({iso(u.first)} .. {iso(u.last)})")
    if report.notes:
        lines.append("")
        lines.append(style("Notes", bold=True))
        lines += [f"  - {n}" for n in report.notes]
    return "\n".join(lines) + "\n"


def _one_line(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("`", "'")


@renderer("markdown")
def render_markdown(report: Report, color: bool = False) -> str:
    j = report.to_json()
    out = [f"# Realtime incident report: {_md(headline(report))}", ""]
    c = j["counts"]
    out.append(f"Window **{j['window']['start']}** to **{j['window']['end']}**: {c['frames']} frames, "
               f"{c['log_records']} log records, {c['postgres_changes']} postgres_changes "
               f"({c['invalid_payloads']} invalid).")
    out += ["", "## Escalations", "", "| rule | verdict | value | limit | since | incidents | reason |", "|---|---|---|---|---|---|---|"]
    for e in report.escalations:
        out.append(f"| {e.rule} | **{_verdict(e)}** | {_md(_value(e))} | {_md(_limit(e))} | {iso(e.since) or ''} | "
                   f"{', '.join(e.incidents)} | {_md(e.reason or '')} |")
    out += ["", "## Incidents", ""]
    if not report.incidents:
        out.append("None.")
    for inc in j["incidents"]:
        out.append(f"### {inc['id']}: {inc['cause']} / {inc['detail']} (x{inc['count']})")
        out.append("")
        out.append(f"{_md(inc['summary'])}")
        out.append("")
        out.append(f"{inc['start']} to {inc['end']}" + (f"; topics: {', '.join(inc['topics'])}" if inc["topics"] else ""))
        out += ["", "| ts | table | source | offset/seq | text |", "|---|---|---|---|---|"]
        for ev in inc["evidence"]:
            where = ev.get("offset", ev.get("seq"))
            out.append(f"| {ev['ts']} | {ev['table']} | {_md(ev['source'])} | {where} | `{_md(_one_line(ev['text'], 200))}` |")
        if inc.get("evidence_omitted"):
            out.append(f"\n{inc['evidence_omitted']} more evidence rows in the JSON report.")
        out.append("")
    if report.unclassified:
        out += ["## Unclassified error records", "", "| count | source | level | text | first | last |", "|---|---|---|---|---|---|"]
        for u in report.unclassified:
            out.append(f"| {u.count} | {_md(u.source)} | {u.level} | `{_md(_one_line(u.text, 160))}` | {iso(u.first)} | {iso(u.last)} |")
        out.append("")
    if report.notes:
        out += ["## Notes", ""] + [f"- {_md(n)}" for n in report.notes] + [""]
    return "\n".join(out) + "\n"


# No script, no network: the policy forbids everything but inline styles, so even a value that
# escaped html.escape could neither run nor fetch anything.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;padding:0 2em;color:#222;max-width:1200px}
h1{font-size:1.4em;margin-bottom:.3em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
h3{font-size:1.02em;margin:.2em 0}
table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{border:1px solid #d6d6d6;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3;white-space:nowrap}td.ts,td.num{white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.causes{width:auto;min-width:28em}tr.zero td{color:#999}
.bad{color:#b00;font-weight:bold}.ok{color:#070}.na{color:#a60}.meta{color:#555;margin:.2em 0}
code,pre{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;white-space:pre-wrap;word-break:break-all}
.inc{border-left:4px solid #c66;padding:.1em 0 .1em .8em;margin:1.2em 0}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.4em;vertical-align:-.05em}
.legend{font-size:12px;color:#444;margin:.2em 0 0}.legend span.item{margin-right:1.2em;white-space:nowrap}
svg.timeline{width:100%;height:auto;max-width:1200px;display:block}
svg.timeline text{font:11px system-ui,sans-serif;fill:#333}svg.timeline text.lane{font-weight:600}
"""

_CAUSE_COLORS = {
    "payload_missing": "#d62728", "invalid_payload": "#ff7f0e", "payload_too_large": "#8c564b",
    "network": "#1f77b4", "subscription_race": "#9467bd", "subscription_failure": "#e377c2",
    "rls": "#17becf", "auth": "#bcbd22", "db_connectivity": "#7f7f7f",
}
_FRAMES_COLOR, _ERRORS_COLOR = "#4a7fb5", "#c0392b"


def _swatch(color: str) -> str:
    return f'<span class="swatch" style="background:{color}"></span>'


def _tick_label(ts: dt.datetime, span_s: float, first: bool) -> str:
    """Axis label as short as the span allows; the date only on the first tick or across days."""
    ts = ts.astimezone(dt.UTC)
    clock = ts.strftime("%H:%M:%S") + (f".{ts.microsecond // 1000:03d}" if span_s < 60 else "")
    if span_s < 120:
        clock = clock if first else clock[3:]  # mm:ss.mmm after the first
    return (ts.strftime("%Y-%m-%d ") + clock) if first or span_s >= 86400 else clock


def _svg_chart(report: Report) -> str:
    """Inline SVG timeline: frames and error-level log records per bucket, then one lane per cause
    with each incident drawn over its span (at least a few pixels wide, so point incidents show)."""
    s = report.series
    if not s:
        return "<p>No timed records in the window.</p>"
    e = html.escape
    frames, errors = s["frames"], s["errors"]
    start, end = s["start"], s["end"]
    span = (end - start).total_seconds() or 1.0
    n = len(frames)
    causes = [c for c in CAUSES if any(i.cause == c and i.start is not None for i in report.incidents)]
    causes += sorted({i.cause for i in report.incidents if i.start is not None} - set(causes))
    width, left, right = 1000, 190, 16
    label_x = left - 36  # lane names; the tick values sit between them and the plot
    plot_w = width - left - right
    frames_top, frames_h = 8, 110
    errors_top, errors_h = frames_top + frames_h + 14, 56
    lanes_top, lane_h = errors_top + errors_h + 16, 18
    axis_y = lanes_top + max(len(causes), 1) * lane_h + 4
    height = axis_y + 20
    bw = plot_w / n

    def x_of(ts: dt.datetime) -> float:
        return left + min(max((ts - start).total_seconds() / span, 0.0), 1.0) * plot_w

    def bucket_title(i: int) -> str:
        b0 = start + dt.timedelta(seconds=span * i / n)
        b1 = start + dt.timedelta(seconds=span * (i + 1) / n)
        return f"{iso(b0)} .. {iso(b1)}"

    parts = [f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="timeline of traffic, errors and incidents">']

    def panel(top: int, h: int, values: list[int], color: str, cls: str, label: str, unit: str) -> None:
        vmax = max(values)
        parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{h}" fill="#fafafa" stroke="#e3e3e3"/>')
        parts.append(f'<text class="lane" x="{label_x}" y="{top + 12}" text-anchor="end">{e(label)}</text>')
        parts.append(f'<text x="{label_x}" y="{top + 26}" text-anchor="end" fill="#777">per bucket</text>')
        if not vmax:
            parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + h / 2 + 4:.1f}" text-anchor="middle" '
                         f'fill="#888">none in the window</text>')
            return
        for frac in (0.5, 1.0):
            y = top + h - h * frac
            parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{left - 5}" y="{top + 9}" text-anchor="end" fill="#777">{vmax}</text>'
                     f'<text x="{left - 5}" y="{top + h}" text-anchor="end" fill="#777">0</text>')
        for i, v in enumerate(values):
            if not v:
                continue
            bh = max(h * v / vmax, 1.5)
            parts.append(f'<rect class="{cls}" x="{left + i * bw + 0.5:.1f}" y="{top + h - bh:.1f}" '
                         f'width="{max(bw - 1, 1):.1f}" height="{bh:.1f}" fill="{color}">'
                         f"<title>{v} {e(unit)}, {e(bucket_title(i))}</title></rect>")

    panel(frames_top, frames_h, frames, _FRAMES_COLOR, "bar-frames", "frames", "frames")
    panel(errors_top, errors_h, errors, _ERRORS_COLOR, "bar-errors", "error log records", "error-level log records")
    if not causes:
        parts.append(f'<text class="lane" x="{label_x}" y="{lanes_top + 13}" text-anchor="end">incidents</text>'
                     f'<text x="{left + plot_w / 2:.1f}" y="{lanes_top + 13}" text-anchor="middle" fill="#888">none</text>')
    for row, cause in enumerate(causes):
        y = lanes_top + row * lane_h
        color = _CAUSE_COLORS.get(cause, "#999")
        if row % 2 == 0:
            parts.append(f'<rect x="{left}" y="{y}" width="{plot_w}" height="{lane_h}" fill="#f6f6f6"/>')
        parts.append(f'<text class="lane" x="{label_x}" y="{y + 13}" text-anchor="end" fill="{color}">{e(cause)}</text>')
        for inc in report.incidents:
            if inc.cause != cause or inc.start is None:
                continue
            x0, x1 = x_of(inc.start), x_of(inc.end or inc.start)
            w = max(x1 - x0, 5.0)
            x0 = min(x0, left + plot_w - w)
            parts.append(f'<rect class="incident" x="{x0:.1f}" y="{y + 3}" width="{w:.1f}" height="{lane_h - 6}" rx="2" '
                         f'fill="{color}"><title>{e(inc.id)} {e(inc.cause)}/{e(inc.detail)} x{inc.count}: '
                         f"{e(iso(inc.start) or '')} .. {e(iso(inc.end) or '')}</title></rect>")
    parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{axis_y - 2}" y2="{axis_y - 2}" stroke="#999"/>')
    ticks = 5
    for k in range(ticks):
        frac = k / (ticks - 1)
        x = left + frac * plot_w
        anchor = "start" if k == 0 else ("end" if k == ticks - 1 else "middle")
        label = _tick_label(start + dt.timedelta(seconds=span * frac), span, first=k == 0)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{axis_y - 2}" y2="{axis_y + 2}" stroke="#999"/>'
                     f'<text x="{x:.1f}" y="{axis_y + 14}" text-anchor="{anchor}">{e(label)}</text>')
    parts.append(f'<text x="{label_x}" y="{axis_y + 14}" text-anchor="end" fill="#777">time (UTC)</text>')
    parts.append("</svg>")
    bucket = span / n
    legend = [f'<span class="item">{_swatch(_FRAMES_COLOR)}frames</span>',
              f'<span class="item">{_swatch(_ERRORS_COLOR)}error-level log records</span>']
    legend += [f'<span class="item">{_swatch(_CAUSE_COLORS.get(c, "#999"))}{e(c)}</span>' for c in causes]
    legend.append(f'<span class="item">{n} buckets of {_duration(bucket)}; hover a bar or an incident for details</span>')
    return "".join(parts) + f'<p class="legend">{"".join(legend)}</p>'


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


@renderer("html")
def render_html(report: Report, color: bool = False) -> str:
    e = html.escape
    j = report.to_json()
    c = j["counts"]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{e(_CSP)}">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{e(headline(report))}</title><style>{_CSS}</style></head><body>"]
    out.append(f'<h1 class="{"bad" if report.escalate else "ok"}">{e(headline(report))}</h1>')
    out.append(f'<p class="meta">Window {e(str(j["window"]["start"]))} to {e(str(j["window"]["end"]))}: '
               f"{c['frames']} frames, {c['log_records']} log records, {c['postgres_changes']} postgres_changes "
               f"({c['invalid_payloads']} invalid).</p>")
    out.append("<h2>Timeline</h2>" + _svg_chart(report))
    out.append("<h2>Escalations</h2><table><tr><th>rule</th><th>verdict</th><th>value</th><th>limit</th><th>since</th>"
               "<th>incidents</th><th>reason</th></tr>")
    for esc in report.escalations:
        cls = "bad" if esc.breached else ("na" if esc.breached is None else "ok")
        out.append(f'<tr><td>{e(esc.rule)}</td><td class="{cls}">{e(_verdict(esc))}</td><td class="num">{e(_value(esc))}</td>'
                   f'<td class="num">{e(_limit(esc))}</td><td class="ts">{e(iso(esc.since) or "")}</td>'
                   f"<td>{e(', '.join(esc.incidents))}</td><td>{e(esc.reason or '')}</td></tr>")
    out.append("</table>")
    counts = Counter(i.cause for i in report.incidents)
    out.append('<h2>Incidents per cause</h2><table class="causes"><tr><th>cause</th><th>incidents</th><th>events</th></tr>')
    for cause in CAUSES:
        events = sum(i.count for i in report.incidents if i.cause == cause)
        zero = "" if counts.get(cause) else ' class="zero"'
        out.append(f"<tr{zero}><td>{_swatch(_CAUSE_COLORS.get(cause, '#999'))}{e(cause)}</td>"
                   f'<td class="num">{counts.get(cause, 0)}</td><td class="num">{events}</td></tr>')
    out.append("</table>")
    out.append(f"<h2>Incidents ({len(report.incidents)})</h2>")
    if not report.incidents:
        out.append("<p>None.</p>")
    for inc in j["incidents"]:
        color = _CAUSE_COLORS.get(inc["cause"], "#c66")
        out.append(f'<div class="inc" id="{e(inc["id"])}" style="border-left-color:{color}">'
                   f'<h3>{e(inc["id"])}: {e(inc["cause"])} / {e(inc["detail"])} (x{inc["count"]})</h3>'
                   f"<p>{e(inc['summary'])}</p>"
                   f'<p class="meta">{e(str(inc["start"]))} to {e(str(inc["end"]))}'
                   + (f"; topics: {e(', '.join(inc['topics']))}" if inc["topics"] else "") + "</p>")
        out.append('<table class="evidence"><tr><th>ts</th><th>table</th><th>source</th><th>offset/seq</th><th>text</th></tr>')
        for ev in inc["evidence"]:
            where = ev.get("offset", ev.get("seq"))
            out.append(f'<tr><td class="ts">{e(str(ev["ts"]))}</td><td>{e(ev["table"])}</td><td>{e(str(ev["source"]))}</td>'
                       f'<td class="num">{e(str(where))}</td><td><code>{e(ev["text"])}</code></td></tr>')
        out.append("</table>")
        if inc.get("evidence_omitted"):
            out.append(f"<p>{inc['evidence_omitted']} more evidence rows in the JSON report.</p>")
        out.append("</div>")
    if report.unclassified:
        out.append('<h2>Unclassified error records</h2><table class="unclassified"><tr><th>count</th><th>source</th>'
                   "<th>level</th><th>text</th><th>first</th><th>last</th></tr>")
        for u in report.unclassified:
            out.append(f'<tr><td class="num">{u.count}</td><td>{e(str(u.source))}</td><td>{e(str(u.level))}</td>'
                       f'<td><code>{e(u.text)}</code></td><td class="ts">{e(iso(u.first) or "")}</td>'
                       f'<td class="ts">{e(iso(u.last) or "")}</td></tr>')
        out.append("</table>")
    if report.notes:
        out.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in report.notes) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def slack_message(report: Report) -> dict:
    """A Slack-compatible incoming-webhook message (``text`` plus mrkdwn blocks) for ``--notify``."""
    lines = [f":rotating_light: *{headline(report)}*"]
    for esc in report.breached:
        lines.append(f"• *{esc.rule}*: {_value(esc)} (limit {_limit(esc)})"
                     + (f" since {iso(esc.since)}" if esc.since else "") + (f": {esc.reason}" if esc.reason else ""))
    for inc in report.incidents[:10]:
        lines.append(f"• {inc.id} {inc.cause}/{inc.detail} x{inc.count}: {inc.summary}")
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}]}
