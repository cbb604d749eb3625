"""Report renderers: ``RENDERERS[format](report, color=False) -> str`` for text, json, markdown, html.

* text: for a terminal (ANSI colours only when asked, i.e. when stdout is a TTY);
* json: the contract object of design.md (:meth:`Report.to_json`);
* markdown: for a ticket;
* html: one self-contained file (inline CSS and SVG, no script, no network), every value
  passed through :func:`html.escape`.
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
        if len(inc.evidence) > 5:
            lines.append(style(f"      ... {len(inc.evidence) - 5} more evidence row(s) (--format json)", "dim"))
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


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.bad{color:#b00;font-weight:bold}.ok{color:#070}.na{color:#a60}
code,pre{font:12px ui-monospace,monospace;white-space:pre-wrap;word-break:break-all}
.inc{border-left:4px solid #c66;padding-left:.8em;margin:1em 0}
"""

_CAUSE_COLORS = {
    "payload_missing": "#d62728", "invalid_payload": "#ff7f0e", "payload_too_large": "#8c564b",
    "network": "#1f77b4", "subscription_race": "#9467bd", "subscription_failure": "#e377c2",
    "rls": "#17becf", "auth": "#bcbd22", "db_connectivity": "#7f7f7f",
}


def _svg_chart(report: Report) -> str:
    """Inline SVG: frames and error records per time bucket, incidents as coloured bands."""
    s = report.series
    if not s:
        return "<p>No timed records in the window.</p>"
    e = html.escape
    width, height, left, top = 1000, 220, 50, 10
    plot_h = 140
    n = len(s["frames"])
    bw = (width - left - 10) / n
    fmax = max(s["frames"]) or 1
    emax = max(s["errors"]) or 1
    start, end = s["start"], s["end"]
    span = (end - start).total_seconds() or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="timeline of traffic, errors and incidents">']
    for inc in report.incidents:
        if inc.start is None:
            continue
        x0 = left + max(0.0, (inc.start - start).total_seconds() / span) * (width - left - 10)
        x1 = left + min(1.0, ((inc.end or inc.start) - start).total_seconds() / span) * (width - left - 10)
        color = _CAUSE_COLORS.get(inc.cause, "#999")
        parts.append(f'<rect x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 2):.1f}" height="{plot_h}" fill="{color}" '
                     f'fill-opacity="0.18"><title>{e(inc.id)} {e(inc.cause)}/{e(inc.detail)}</title></rect>')
    for i, (fr, er) in enumerate(zip(s["frames"], s["errors"], strict=True)):
        x = left + i * bw
        h = plot_h * fr / fmax
        parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{max(bw - 1, 1):.1f}" height="{h:.1f}" fill="#4a7fb5">'
                     f"<title>{fr} frames</title></rect>")
        if er:
            eh = plot_h * er / emax
            parts.append(f'<rect x="{x + bw / 4:.1f}" y="{top + plot_h - eh:.1f}" width="{max(bw / 2, 1):.1f}" '
                         f'height="{eh:.1f}" fill="#d62728"><title>{er} error records</title></rect>')
    axis_y = top + plot_h + 14
    for frac in (0, 0.5, 1):
        t = start + dt.timedelta(seconds=span * frac)
        x = left + frac * (width - left - 10)
        anchor = "start" if frac == 0 else ("end" if frac == 1 else "middle")
        parts.append(f'<text x="{x:.1f}" y="{axis_y}" font-size="11" text-anchor="{anchor}">{e(iso(t) or "")}</text>')
    parts.append(f'<text x="{left}" y="{axis_y + 22}" font-size="11"><tspan fill="#4a7fb5">■ frames (max {fmax})</tspan>'
                 f'  <tspan fill="#d62728">■ error log records (max {emax})</tspan>  shaded: incidents</text>')
    parts.append("</svg>")
    return "".join(parts)


@renderer("html")
def render_html(report: Report, color: bool = False) -> str:
    e = html.escape
    j = report.to_json()
    c = j["counts"]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{e(headline(report))}</title><style>{_CSS}</style></head><body>"]
    out.append(f'<h1 class="{"bad" if report.escalate else "ok"}">{e(headline(report))}</h1>')
    out.append(f"<p>Window {e(str(j['window']['start']))} to {e(str(j['window']['end']))}: {c['frames']} frames, "
               f"{c['log_records']} log records, {c['postgres_changes']} postgres_changes ({c['invalid_payloads']} invalid).</p>")
    out.append("<h2>Timeline</h2>" + _svg_chart(report))
    out.append("<h2>Escalations</h2><table><tr><th>rule</th><th>verdict</th><th>value</th><th>limit</th><th>since</th>"
               "<th>incidents</th><th>reason</th></tr>")
    for esc in report.escalations:
        cls = "bad" if esc.breached else ("na" if esc.breached is None else "ok")
        out.append(f'<tr><td>{e(esc.rule)}</td><td class="{cls}">{e(_verdict(esc))}</td><td>{e(_value(esc))}</td>'
                   f"<td>{e(_limit(esc))}</td><td>{e(iso(esc.since) or '')}</td><td>{e(', '.join(esc.incidents))}</td>"
                   f"<td>{e(esc.reason or '')}</td></tr>")
    out.append("</table>")
    counts = Counter(i.cause for i in report.incidents)
    out.append("<h2>Incidents per cause</h2><table><tr><th>cause</th><th>incidents</th><th>events</th></tr>")
    for cause in CAUSES:
        events = sum(i.count for i in report.incidents if i.cause == cause)
        out.append(f"<tr><td>{e(cause)}</td><td>{counts.get(cause, 0)}</td><td>{events}</td></tr>")
    out.append("</table>")
    out.append(f"<h2>Incidents ({len(report.incidents)})</h2>")
    for inc in j["incidents"]:
        out.append(f'<div class="inc" id="{e(inc["id"])}"><h3>{e(inc["id"])}: {e(inc["cause"])} / {e(inc["detail"])} '
                   f"(x{inc['count']})</h3><p>{e(inc['summary'])}</p>"
                   f"<p>{e(str(inc['start']))} to {e(str(inc['end']))}"
                   + (f"; topics: {e(', '.join(inc['topics']))}" if inc["topics"] else "") + "</p>")
        out.append("<table><tr><th>ts</th><th>table</th><th>source</th><th>offset/seq</th><th>text</th></tr>")
        for ev in inc["evidence"]:
            where = ev.get("offset", ev.get("seq"))
            out.append(f"<tr><td>{e(str(ev['ts']))}</td><td>{e(ev['table'])}</td><td>{e(str(ev['source']))}</td>"
                       f"<td>{e(str(where))}</td><td><code>{e(ev['text'])}</code></td></tr>")
        out.append("</table>")
        if inc.get("evidence_omitted"):
            out.append(f"<p>{inc['evidence_omitted']} more evidence rows in the JSON report.</p>")
        out.append("</div>")
    if report.unclassified:
        out.append("<h2>Unclassified error records</h2><table><tr><th>count</th><th>source</th><th>level</th>"
                   "<th>text</th><th>first</th><th>last</th></tr>")
        for u in report.unclassified:
            out.append(f"<tr><td>{u.count}</td><td>{e(str(u.source))}</td><td>{e(str(u.level))}</td>"
                       f"<td><code>{e(u.text)}</code></td><td>{e(iso(u.first) or '')}</td><td>{e(iso(u.last) or '')}</td></tr>")
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
