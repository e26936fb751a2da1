"""A results page opened in headless Chromium, with its errors and its behaviour read back.

Chromium runs with ``--dump-dom``: a probe script injected at the top of a copy of the page
(written beside it, so relative image paths still resolve) collects every error (script
errors, failed image loads, ``console.error``) and, once the page has loaded, drives the
page's own controls and writes what it saw as JSON into the DOM that Chromium prints.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

#: Where Debian's ``chromium`` package (``apt-get install chromium``) and others put the browser.
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

_PROBE = """<script>
window.__errors = [];
window.addEventListener("error", function (event) {
  var where = event.target && event.target.src ? " (" + event.target.src + ")" : "";
  window.__errors.push("error: " + (event.message || "failed to load") + where);
}, true);
var __consoleError = console.error;
console.error = function () {
  window.__errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
  __consoleError.apply(console, arguments);
};
window.addEventListener("load", function () {
  function visible() {
    return Array.prototype.filter.call(document.querySelectorAll("#tiles .tile"), function (card) {
      return !card.hidden;
    }).map(function (card) { return card.getAttribute("data-name"); });
  }
  var images = Array.prototype.map.call(document.images, function (img) {
    return {src: img.getAttribute("src"), loaded: img.complete && img.naturalWidth > 0};
  });
  var seen = {initial: visible(), count: document.getElementById("count").textContent, images: images};
  var sort = document.getElementById("sort"), worse = document.getElementById("worse");
  sort.value = "gain-asc"; sort.dispatchEvent(new Event("change"));
  seen.ascending = visible();
  sort.value = "name"; sort.dispatchEvent(new Event("change"));
  seen.by_name = visible();
  worse.checked = true; worse.dispatchEvent(new Event("change"));
  seen.worse = visible();
  seen.worse_count = document.getElementById("count").textContent;
  seen.errors = window.__errors;
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(seen);
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    """The Chromium executable; skips the test (saying how to get one) when there is none."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "no Chromium found (looked for " + ", ".join(CANDIDATES) + "); install it: apt-get install chromium"
    )


def probe_page(page: Path, fragment: str = "") -> dict:
    """Load ``page`` (with ``#fragment``) in headless Chromium; what the probe saw.

    Returns:
        ``initial``, ``ascending``, ``by_name``, ``worse``: the visible tile names in order (on
        load, then after choosing each sort and the "got worse" filter through the page's own
        controls); ``count`` and ``worse_count``: the page's "N of M tiles shown"; ``images``:
        each image's ``src`` and whether it loaded; ``errors``: every error the page raised.
    """
    browser = chromium()
    text = page.read_text(encoding="utf-8")
    probed = page.with_name(f".probe-{page.name}")
    probed.write_text(text.replace("<head>", "<head>" + _PROBE, 1), encoding="utf-8")
    url = probed.resolve().as_uri() + (f"#{fragment}" if fragment else "")
    profile = page.parent / ".chromium-profile"
    try:
        done = subprocess.run(
            [
                browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                "--virtual-time-budget=5000", "--dump-dom", url,
            ],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        probed.unlink(missing_ok=True)
        shutil.rmtree(profile, ignore_errors=True)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, flags=re.DOTALL)
    assert found, (
        f"the page never finished loading in Chromium (exit {done.returncode}): {done.stderr[-2000:]}"
    )
    return json.loads(found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
