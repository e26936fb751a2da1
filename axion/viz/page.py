"""``index.html``: one page that ties an evaluation's numbers and figures together.

The page is self-contained: its style and script are inline, it loads nothing from the
network, and its images are the PNG files ``visualize`` writes beside it (relative paths),
so it works opened straight from the file system. It holds

- what was evaluated (checkpoint, epoch, split, opt_v2 source) and the summary table:
  each metric's mean for opt_v2 and opt_v3 against the ground truth, the change, and on
  how many tiles opt_v3 is the better one;
- the training curves and metric distributions, when they were drawn;
- one card per tile with its scores and its panel (when drawn), sortable by PSNR gain
  (opt_v3 - opt_v2) and filterable to the tiles that got worse (gain < 0).

The initial order and filter can be given in the address: ``index.html#sort=gain-asc&worse=1``
(``sort`` is ``gain-desc``, ``gain-asc`` or ``name``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from axion.atomic import atomic_path
from axion.records.results import METRICS

PAGE_FILE = "index.html"
#: The score whose change sorts the tiles and decides which got worse.
GAIN_METRIC = "psnr"
#: Scores shown on every tile card, when the results hold them.
CARD_METRICS = ("psnr", "ssim", "sar_agreement", "lpips")

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; padding: 0 1em; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.5em; }
table { border-collapse: collapse; } th, td { padding: .25em .7em; border-bottom: 1px solid #ddd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.better { color: #176b1f; } .worse { color: #a31515; }
.meta td:first-child { color: #666; }
figure { margin: 0; } img { max-width: 100%; }
.controls { margin: .7em 0; display: flex; gap: 1.5em; align-items: center; }
.tile { border: 1px solid #ccc; border-radius: 6px; padding: .6em; margin: .8em 0; }
.tile h3 { margin: 0 0 .3em; font-size: 1em; }
.tile .none { color: #666; font-style: italic; }
"""

_SCRIPT = """
(function () {
  var list = document.getElementById("tiles");
  var sort = document.getElementById("sort");
  var worse = document.getElementById("worse");
  var count = document.getElementById("count");
  var cards = Array.prototype.slice.call(list.querySelectorAll(".tile"));
  function gain(card) {
    var value = parseFloat(card.getAttribute("data-gain"));
    return isNaN(value) ? null : value;
  }
  function byName(a, b) {
    var x = a.getAttribute("data-name"), y = b.getAttribute("data-name");
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  function compare(a, b) {
    if (sort.value === "name") { return byName(a, b); }
    var x = gain(a), y = gain(b);
    if (x === null || y === null) { return x === y ? byName(a, b) : (x === null ? 1 : -1); }
    if (x === y) { return byName(a, b); }
    return sort.value === "gain-asc" ? x - y : y - x;
  }
  function apply() {
    var shown = 0;
    cards.slice().sort(compare).forEach(function (card) {
      var g = gain(card);
      card.hidden = worse.checked && !(g !== null && g < 0);
      if (!card.hidden) { shown += 1; }
      list.appendChild(card);
    });
    count.textContent = shown + " of " + cards.length + " tiles shown";
  }
  location.hash.replace(/^#/, "").split("&").forEach(function (part) {
    var pair = part.split("=");
    if (pair[0] === "sort" && sort.querySelector('option[value="' + pair[1] + '"]')) { sort.value = pair[1]; }
    if (pair[0] === "worse") { worse.checked = pair[1] === "1"; }
  });
  sort.addEventListener("change", apply);
  worse.addEventListener("change", apply);
  apply();
})();
"""


def _number(value: Any, digits: int = 3) -> str:
    if isinstance(value, int | float) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return "n/a"


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _label(metric: str) -> tuple[str, str, bool]:
    """(label, unit, higher is better) of a metric (unknown ones: their key, higher is better)."""
    if metric == "sar_edge_correlation":
        return "SAR edge correlation", "", True
    return METRICS.get(metric, (metric, "", True))


def _cell(value: Any, digits: int, css: str = "") -> str:
    klass = f"num {css}".strip()
    return f'<td class="{klass}">{_number(value, digits)}</td>'


def _summary_table(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    metrics = summary.get("metrics", {})
    v2, v3, target = (metrics.get(src, {}) for src in ("opt_v2", "opt_v3", "target"))
    keys = [k for k in METRICS if k in v3] + sorted(k for k in v3 if k not in METRICS)
    lines = [
        "<table><thead><tr><th>metric</th><th>unit</th><th>opt_v2 (input)</th><th>opt_v3 (output)</th>"
        "<th>ground truth</th><th>change</th><th>opt_v3 better on</th></tr></thead><tbody>"
    ]
    for key in keys:
        label, unit, higher = _label(key)
        before, after = (src.get(key, {}).get("mean") for src in (v2, v3))
        change = after - before if _finite(before) and _finite(after) else math.nan
        css = "" if not _finite(change) or change == 0 else ("better" if (change > 0) == higher else "worse")
        pairs = [(r.get(f"opt_v2_{key}"), r.get(f"opt_v3_{key}")) for r in rows]
        pairs = [(a, b) for a, b in pairs if _finite(a) and _finite(b)]
        won = sum(1 for a, b in pairs if (b > a if higher else b < a))
        truth = target.get(key, {}).get("mean") if key in target else None
        lines.append(
            f"<tr><td>{html.escape(label)}</td><td>{html.escape(unit)}</td>{_cell(before, 4)}{_cell(after, 4)}"
            f"{_cell(truth, 4) if truth is not None else '<td>reference</td>'}{_cell(change, 4, css)}"
            f'<td class="num">{won} of {len(pairs)} tiles</td></tr>'
        )
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _meta_table(summary: Mapping[str, Any]) -> str:
    fields = (
        ("checkpoint", "checkpoint"),
        ("epoch", "epoch"),
        ("split", "split"),
        ("tiles", "tiles"),
        ("opt_v2", "opt_v2_source"),
        ("timesteps", "timesteps"),
        ("seed", "seed"),
        ("precision", "precision"),
    )
    cells = [
        f"<tr><td>{label}</td><td>{html.escape(str(summary[key]))}</td></tr>"
        for label, key in fields
        if summary.get(key) is not None
    ]
    return '<table class="meta">' + "".join(cells) + "</table>"


def _card(row: Mapping[str, Any], panel: str | None) -> str:
    name = str(row["name"])
    gain = _gain(row)
    scores = []
    for key in CARD_METRICS:
        before, after = row.get(f"opt_v2_{key}"), row.get(f"opt_v3_{key}")
        if before is None and after is None:
            continue
        label, unit, higher = _label(key)
        change = after - before if _finite(before) and _finite(after) else math.nan
        css = "" if not _finite(change) or change == 0 else ("better" if (change > 0) == higher else "worse")
        unit_text = f" {unit}" if unit in ("dB", "deg") else ""
        scores.append(
            f"<tr><td>{html.escape(label)}</td>{_cell(before, 3)}{_cell(after, 3)}{_cell(change, 3, css)}"
            f"<td>{html.escape(unit_text.strip())}</td></tr>"
        )
    image = (
        f'<figure><img src="{html.escape(panel)}" alt="panel of {html.escape(name)}"></figure>'
        if panel
        else '<p class="none">no panel: its arrays were not saved (evaluate --save-arrays) or it is beyond '
        "--max-tiles</p>"
    )
    gain_text = f"{gain:+.2f} dB" if _finite(gain) else "n/a"
    return (
        f'<section class="tile" data-name="{html.escape(name)}" data-gain="{gain if _finite(gain) else "NaN"}">'
        f"<h3>{html.escape(name)}: PSNR gain {gain_text}</h3>"
        "<table><thead><tr><th>score</th><th>opt_v2</th><th>opt_v3</th><th>change</th><th></th></tr></thead>"
        f"<tbody>{''.join(scores)}</tbody></table>{image}</section>"
    )


def _gain(row: Mapping[str, Any]) -> float:
    """The tile's change of :data:`GAIN_METRIC`, opt_v3 minus opt_v2 (NaN when either is missing)."""
    before, after = row.get(f"opt_v2_{GAIN_METRIC}"), row.get(f"opt_v3_{GAIN_METRIC}")
    return after - before if _finite(before) and _finite(after) else math.nan


def _by_gain(row: Mapping[str, Any]) -> tuple[bool, float, str]:
    """The page's first order (the script's too): largest gain first, tiles without one last, then by name."""
    gain = _gain(row)
    return (not _finite(gain), -gain if _finite(gain) else 0.0, str(row["name"]))


def results_page(
    summary: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    panels: Mapping[str, str],
    figures: Sequence[tuple[str, str]],
) -> str:
    """The page's HTML.

    Args:
        summary: ``summary.json`` of the evaluation.
        rows: ``per_tile.csv``'s rows.
        panels: tile name -> the path of its panel PNG relative to the page.
        figures: (title, path relative to the page) of the other figures, in order.
    """
    figure_html = "".join(
        f'<h2>{html.escape(title)}</h2><figure><img src="{html.escape(path)}" alt="{html.escape(title)}">'
        "</figure>"
        for title, path in figures
    )
    cards = "\n".join(_card(row, panels.get(str(row["name"]))) for row in sorted(rows, key=_by_gain))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>axion Stage 3 results</title>
<style>{_STYLE}</style>
</head><body>
<h1>Stage 3 results: opt_v2 (input) against opt_v3 (output), both scored against the ground truth</h1>
{_meta_table(summary)}
<h2>Summary (means over the tiles)</h2>
{_summary_table(summary, rows)}
{figure_html}
<h2>Tiles</h2>
<div class="controls">
<label>Sort by <select id="sort">
<option value="gain-desc">PSNR gain, largest first</option>
<option value="gain-asc">PSNR gain, smallest first</option>
<option value="name">name</option>
</select></label>
<label><input type="checkbox" id="worse"> only tiles that got worse (PSNR gain &lt; 0)</label>
<span id="count"></span>
</div>
<div id="tiles">
{cards}
</div>
<script>{_SCRIPT}</script>
</body></html>
"""


def write_results_page(
    path: Path,
    summary: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    panels: Mapping[str, str],
    figures: Sequence[tuple[str, str]],
) -> Path:
    """Write :func:`results_page` to ``path`` atomically (see it for the arguments)."""
    with atomic_path(path, keep_suffix=True) as tmp:
        tmp.write_text(results_page(summary, rows, panels, figures), encoding="utf-8")
    return path
