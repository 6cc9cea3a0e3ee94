"""``history --html`` and ``timeline.html`` in a diagnose bundle: one self-contained page.

No network at all (a Content-Security-Policy forbids it, so nothing injected could load
anything either), no external script, style or font. One inline SVG per row, every value
downsampled per pixel column to its min/max envelope, so a day at 30 s of 40 series stays
well under 1 MB. Every text from the device is escaped. A small inline script shows the
time and value under the mouse; it records its own errors on ``<html data-js-errors>``
so a headless browser test can see them.
"""

from __future__ import annotations

from html import escape

from belabox_metrics.timeline import rows as rw
from belabox_metrics.timeline import signals as sig
from belabox_metrics.timeline import units
from belabox_metrics.timeline.history import History, clock, iso, parse_history
from belabox_metrics.timeline.screen import duration, marker

PLOT_W = 900  # data columns: one per pixel
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 4, 16
PLOT_H = 64
SVG_W, SVG_H = LEFT + PLOT_W + RIGHT, TOP + PLOT_H + BOTTOM
TICK_STEPS = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)

CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "img-src data:; base-uri 'none'; form-action 'none'")

STYLE = """
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#111;background:#fff}
h1{font-size:18px;margin:0 0 4px}
p.note{color:#555;margin:2px 0 12px}
figure{margin:0 0 6px}
figcaption{font-size:13px}
figcaption .st{color:#333;margin-left:12px;font-variant-numeric:tabular-nums}
figcaption .dt{color:#888;margin-left:12px;font-size:11px}
svg{display:block;background:#fafafa}
.env{stroke:#1f6fb2;stroke-width:1;stroke-linecap:square;fill:none}
.state .env{stroke:#2a8a3a}
.down{fill:#e5484d;opacity:.35}
.unv{fill:#f5b800;opacity:.18}
.ev{stroke:#b03aa8;stroke-width:1;opacity:.55}
.ax{fill:#666;font-size:10px}
.grid{stroke:#e3e3e3}
.cur{stroke:#000;stroke-width:1;opacity:0}
#readout{position:fixed;pointer-events:none;background:#222;color:#fff;padding:2px 6px;border-radius:3px;
 font-size:12px;display:none;white-space:pre;z-index:2}
table{border-collapse:collapse;margin-top:12px}
td,th{padding:2px 8px;text-align:left;vertical-align:top;border-bottom:1px solid #eee}
td.k{font-family:monospace}
"""

# Registered first, so an error anywhere later on the page is recorded.
ERROR_HOOK = """(function(){var r=document.documentElement;function rec(m){r.setAttribute('data-js-errors',
(r.getAttribute('data-js-errors')||'')+m+'\\n');}window.addEventListener('error',function(e){
rec((e.message||'error')+' at '+(e.filename||'')+':'+(e.lineno||0));});var ce=console.error;
console.error=function(){rec(Array.prototype.join.call(arguments,' '));return ce.apply(console,arguments);};})();"""

SCRIPT = """(function(){
var ro=document.getElementById('readout');
function t2s(t){return new Date(t*1000).toISOString().replace('T',' ').slice(0,19)+' UTC';}
function show(v,u,st){if(v===''||v===undefined)return 'no data';var p=v.split(',');
 if(st){return p.length>1&&p[0]!==p[1]?'up and down':(+p[0]>=0.5?'up':'down');}
 return (p.length>1?p[0]+' to '+p[1]:p[0])+(u?' '+u:'');}
function values(svg){var v=svg.getAttribute('data-v').split(' ');
 for(var i=1;i<v.length;i++){if(v[i]==='=')v[i]=v[i-1];}return v;}
function readAt(svg,clientX,clientY){
 var r=svg.getBoundingClientRect(),vals=svg._v||(svg._v=values(svg));
 var x=(clientX-r.left)*svg.viewBox.baseVal.width/r.width,L=+svg.getAttribute('data-left');
 var c=Math.floor(x-L),cur=svg.querySelector('.cur');
 if(c<0||c>=vals.length){ro.style.display='none';cur.style.opacity=0;return '';}
 var t0=+svg.getAttribute('data-t0'),t1=+svg.getAttribute('data-t1'),t=t0+(c+0.5)*(t1-t0)/vals.length;
 var text=t2s(t)+'  '+svg.getAttribute('aria-label')+': '+show(vals[c],svg.getAttribute('data-unit'),
  svg.classList.contains('state'));
 cur.setAttribute('x1',L+c+0.5);cur.setAttribute('x2',L+c+0.5);cur.style.opacity=0.6;
 ro.textContent=text;ro.style.display='block';ro.style.left=(clientX+12)+'px';ro.style.top=(clientY+12)+'px';
 return text;}
var plots=document.querySelectorAll('svg.plot');
Array.prototype.forEach.call(plots,function(svg){
 svg.addEventListener('mousemove',function(e){readAt(svg,e.clientX,e.clientY);});
 svg.addEventListener('mouseleave',function(){ro.style.display='none';svg.querySelector('.cur').style.opacity=0;});});
if(location.hash==='#selftest'){var out=[];Array.prototype.forEach.call(plots,function(svg){
 var r=svg.getBoundingClientRect(),L=+svg.getAttribute('data-left'),k=r.width/svg.viewBox.baseVal.width;
 var x=r.left+(L+svg.getAttribute('data-v').split(' ').length-1)*k,y=r.top+r.height/2;
 svg.dispatchEvent(new MouseEvent('mousemove',{clientX:x,clientY:y,bubbles:true}));out.push(ro.textContent);});
 document.getElementById('selftest').textContent=out.join('\\n');}
document.body.setAttribute('data-ready','1');
})();"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _num(v: float) -> str:
    """Compact number for the hover data (about 3 significant digits)."""
    text = f"{v:.3g}"
    return text[:-2] if text.endswith(".0") else text


def _ticks(since: float, until: float) -> list[float]:
    span = until - since
    step = next((s for s in TICK_STEPS if span / s <= 8), TICK_STEPS[-1])
    first = (since // step + 1) * step
    return [t for t in (first + i * step for i in range(int(span // step) + 1)) if t < until]


def _x(t: float, since: float, until: float) -> float:
    return LEFT + (t - since) / (until - since) * PLOT_W


def _plot(row: rw.Row, h: History, ticks: list[float]) -> str:
    cols = rw.columns(row, h.since, h.until, PLOT_W)
    if row.kind == sig.INCREASE:
        env = [(0.0, c.total) if c else None for c in cols]
        div, label = 1.0, ""
    else:
        env = [(c.lo, c.hi) if c else None for c in cols]
        vals = [v for _, v in row.points]
        div, label = units.scale_for(row.unit, max(abs(min(vals)), abs(max(vals))))
    present = [x for pair in env if pair for x in pair]
    lo, hi = (0.0, 1.0) if row.kind == sig.STATE else (min(present), max(present))
    if hi <= lo:  # a constant: drawn mid-height, a constant 0 at the bottom
        lo, hi = (0.0, 1.0) if lo == 0 else (lo - abs(lo) * 0.1, hi + abs(hi) * 0.1)
    pad = (hi - lo) * 0.05 if row.kind != sig.STATE else 0.0

    def y(v: float) -> int:
        return round(TOP + (hi + pad - v) / (hi - lo + 2 * pad) * PLOT_H)

    sticks: list[tuple[int, int, int] | None] = []
    data: list[str] = []
    down: list[int] = []
    prev = None
    for c, pair in enumerate(env):
        if pair is None:
            sticks.append(None)
            data.append("")
            prev = None
            continue
        a, b = pair
        sticks.append((LEFT + c, y(b), y(a)))
        text = _num(a / div) if a == b else f"{_num(a / div)},{_num(b / div)}"
        # "=": same as the column before; a day of 30 s points often repeats (a held state, a level)
        data.append("=" if text == prev else text)
        prev = text
        if row.kind == sig.STATE and a < 0.5:
            down.append(c)
    parts = [f'<rect class="unv" x="{_x(a, h.since, h.until):.1f}" y="{TOP}" '
             f'width="{max(1.0, (min(b, h.until) - max(a, h.since)) / (h.until - h.since) * PLOT_W):.1f}" '
             f'height="{PLOT_H}"/>' for a, b in h.unverified if b > h.since and a < h.until]
    parts += [f'<line class="grid" x1="{_x(t, h.since, h.until):.1f}" x2="{_x(t, h.since, h.until):.1f}" '
              f'y1="{TOP}" y2="{TOP + PLOT_H}"/><text class="ax" x="{_x(t, h.since, h.until):.1f}" '
              f'y="{SVG_H - 4}" text-anchor="middle">{clock(t, False)}</text>' for t in ticks]
    for start, end in _runs(down):
        parts.append(f'<rect class="down" x="{LEFT + start}" y="{TOP}" width="{end - start + 1}" height="{PLOT_H}"/>')
    parts.append(f'<path class="env" d="{envelope_path(sticks)}"/>')
    ev = "".join(f"M{_x(e.time, h.since, h.until):.1f} {TOP}V{TOP + PLOT_H}" for e in h.events
                 if h.since <= e.time <= h.until)
    if ev:
        parts.append(f'<path class="ev" d="{ev}"/>')
    ylabels = ("up", "down") if row.kind == sig.STATE else (units.num(hi / div), units.num(lo / div))
    parts.append(f'<text class="ax" x="{LEFT - 4}" y="{TOP + 9}" text-anchor="end">{_e(ylabels[0])}</text>'
                 f'<text class="ax" x="{LEFT - 4}" y="{TOP + PLOT_H}" text-anchor="end">{_e(ylabels[1])}</text>')
    parts.append(f'<line class="cur" x1="0" x2="0" y1="{TOP}" y2="{TOP + PLOT_H}"/>')
    unit = label if row.kind != sig.INCREASE else "in column"
    cls = "plot state" if row.kind == sig.STATE else "plot"
    return (f'<svg class="{cls}" data-series="{_e(row.key)}" data-unit="{_e(unit)}" data-left="{LEFT}" '
            f'data-t0="{h.since:.0f}" data-t1="{h.until:.0f}" data-v="{" ".join(data)}" '
            f'aria-label="{_e(row.title)}" role="img" viewBox="0 0 {SVG_W} {SVG_H}" width="{SVG_W}" '
            f'height="{SVG_H}">{"".join(parts)}</svg>')


def envelope_path(sticks: list[tuple[int, int, int] | None]) -> str:
    """SVG path of one vertical stick (top to bottom) per column, in relative moves, with
    runs of flat columns at one height joined into one horizontal line: about a third the
    size of absolute sticks, which matters at 900 columns times 40 plots."""
    out: list[str] = []
    px = py = 0  # the pen
    i = 0
    while i < len(sticks):
        st = sticks[i]
        if st is None:
            i += 1
            continue
        x, top, bottom = st
        run = 1
        if top == bottom:
            while i + run < len(sticks) and sticks[i + run] == (x + run, top, top):
                run += 1
        out.append(f"m{x - px} {top - py}" if out else f"M{x} {top}")
        if run > 1:
            out.append(f"h{run - 1}")
            px, py = x + run - 1, top
        else:
            out.append(f"v{bottom - top}")
            px, py = x, bottom
        i += run
    return "".join(out)


def _runs(cols: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for c in cols:
        if out and out[-1][1] == c - 1:
            out[-1] = (out[-1][0], c)
        else:
            out.append((c, c))
    return out


def _stats(row: rw.Row) -> str:
    vals = [v for _, v in row.points]
    if row.kind == sig.STATE:
        return f"now {units.state_word(vals[-1])}, down {sum(1 for v in vals if v < 0.5)} of {len(vals)} samples"
    if row.kind == sig.INCREASE:
        return f"{units.num(sum(vals))} in window"
    return (f"min {units.value(min(vals), row.unit)} · max {units.value(max(vals), row.unit)} · "
            f"last {units.value(vals[-1], row.unit)}")


def _events_strip(h: History) -> str:
    marks = []
    for e in h.events:
        if h.since <= e.time <= h.until:
            x = _x(e.time, h.since, h.until)
            marks.append(f'<g><title>{_e(iso(e.time))} {_e(e.kind)}: {_e(e.text)}</title>'
                         f'<line class="ev" x1="{x:.1f}" x2="{x:.1f}" y1="2" y2="22"/>'
                         f'<text class="ax" x="{x + 2:.1f}" y="12">{_e(marker(e.kind))}</text></g>')
    for a, b in h.unverified:
        if b > h.since and a < h.until:
            x0, x1 = _x(max(a, h.since), h.since, h.until), _x(min(b, h.until), h.since, h.until)
            marks.append(f'<rect class="unv" x="{x0:.1f}" y="0" width="{max(1.0, x1 - x0):.1f}" height="24">'
                         f'<title>clock not verified {_e(iso(a))} to {_e(iso(b))}</title></rect>')
    return (f'<figure><figcaption><b>events</b></figcaption><svg class="events" viewBox="0 0 {SVG_W} 24" '
            f'width="{SVG_W}" height="24">{"".join(marks)}</svg></figure>')


def _events_table(h: History) -> str:
    rows = [f'<tr><td class="k">{_e(iso(e.time))}</td><td>{_e(e.kind)}</td><td>{_e(e.text)}</td></tr>'
            for e in h.events if h.since <= e.time <= h.until]
    if not rows:
        return "<p>No events in this window.</p>"
    return f'<table class="events"><tr><th>time</th><th>kind</th><th>event</th></tr>{"".join(rows)}</table>'


def render_html(history: dict) -> str:
    h = parse_history(history)
    all_rows = rw.build_rows(h, include_other=True)
    ticks = _ticks(h.since, h.until)
    who = " ".join(f"{k} {v}" for k, v in (("device", h.device_id), ("host", h.host)) if v)
    per_col = (h.until - h.since) / PLOT_W
    figures = []
    for row in all_rows:
        figures.append(f'<figure><figcaption><b>{_e(row.title)}</b><span class="st">{_e(_stats(row))}</span>'
                       f'<span class="dt">{_e(row.detail)}</span></figcaption>{_plot(row, h, ticks)}</figure>')
    unverified = " Shaded yellow: the clock was not verified, times there may be wrong." if h.unverified else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width">
<title>{_e("History " + who if who else "History")}</title>
<script>{ERROR_HOOK}</script>
<style>{STYLE}</style></head>
<body>
<h1>What happened? {_e(who)}</h1>
<p class="note">{_e(iso(h.since))} to {_e(iso(h.until))} ({_e(duration(h.until - h.since))}), times in UTC.
Each plot is the min-max envelope of the values in each pixel column ({per_col:.0f} s per column); a gap is
missing data; vertical lines are events; red: down.{unverified} Move the mouse over a plot to read it.</p>
{_events_strip(h)}
{"".join(figures) if figures else "<p>No series have data in this window.</p>"}
<h2>Events</h2>
{_events_table(h)}
<div id="readout"></div><pre id="selftest"></pre>
<script>{SCRIPT}</script>
</body></html>
"""
