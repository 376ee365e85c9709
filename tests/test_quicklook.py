"""The quicklook page (``GET /`` from a browser), in Debian's chromium driven
by Playwright, through the real stack (router, hub, weather server, bridge).

The browser is never downloaded: ``make test`` installs Debian's chromium
(``make chromium``) and a missing one fails the test rather than skipping it.
"""

from __future__ import annotations

import math
import os
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = ["apex_humidity", "apex_pressure", "apex_radiometer", "apex_temperature", "apex_windspeed"]
TEMPERATURE = "apex_archive::apex_temperature"
DAY = 24 * 3600

# Pixels of a series' stroke colour on its chart's canvas (mostly opaque ones:
# anti-aliased edges keep the colour with a lower alpha).
COUNT_STROKE_PIXELS = """(index) => {
  const u = window.quicklook.charts[0];
  const s = u.series[index];
  const color = typeof s.stroke === "function" ? s.stroke(u, index) : s.stroke;
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(color.slice(i, i + 2), 16));
  const canvas = u.ctx.canvas;
  const px = u.ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < px.length; i += 4) {
    const off = Math.abs(px[i] - r) + Math.abs(px[i + 1] - g) + Math.abs(px[i + 2] - b);
    if (off < 60 && px[i + 3] > 128) n += 1;
  }
  return {color, n};
}"""

CHART_STATE = """() => {
  const q = window.quicklook;
  return {
    loads: q.loads,
    charts: q.charts.map((u) => ({
      title: u.root.querySelector(".u-title").textContent,
      labels: u.series.slice(1).map((s) => s.label),
      width: u.width,
      xmin: u.scales.x.min,
      xmax: u.scales.x.max,
      times: u.data[0].length,
      finite: u.data.slice(1).map((col) => col.filter((v) => Number.isFinite(v)).length),
      nonFinite: u.data.slice(1).map((col) => col.filter((v) => v != null && !Number.isFinite(v)).length),
    })),
  };
}"""


def artifacts_dir() -> str:
    path = os.environ.get("SISOCK_ARTIFACTS") or os.path.join(REPO, "test-artifacts")
    os.makedirs(path, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: the quicklook test drives Debian's chromium. "
                    "Install it with `make chromium` (apt-get install -y chromium).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, stack, bridge):
    """A fresh page that records every console error, page error, failed
    request and HTTP error answer in ``page.problems``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    pg.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
    pg.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
    pg.problems = problems
    yield pg
    context.close()


def wait_loaded(page, loads: int):
    """Until the page has finished ``loads`` data loads and shows them."""
    page.wait_for_function(
        "(n) => window.quicklook.loads >= n && document.body.dataset.state === 'ready'", arg=loads)
    return page.evaluate(CHART_STATE)


def test_quicklook_in_browser(page, stack):
    page.goto(stack.http + "/")
    page.wait_for_selector("body[data-state=ready]")
    page.wait_for_selector("#fields input[type=checkbox]")

    listed = page.eval_on_selector_all("#fields input[type=checkbox]", "boxes => boxes.map(b => b.value)")
    assert {f"apex_archive::{f}" for f in FIELDS} <= set(listed)
    assert page.inner_text("#fields details[data-node=apex_archive] summary").startswith("apex_archive")

    # the filter narrows the list to the matching field
    page.fill("#filter", "temperat")
    visible = page.eval_on_selector_all("#fields label:not([hidden]) input", "boxes => boxes.map(b => b.value)")
    assert visible == [TEMPERATURE]
    page.fill("#filter", "")

    # 24 h, then one field: one chart, one line
    page.click(".presets button[data-range='24h']")
    page.check(f"#fields input[value='{TEMPERATURE}']")
    view = wait_loaded(page, 1)
    assert "range=24h" in page.url and "t=apex_archive::apex_temperature" in page.url
    assert len(view["charts"]) == 1, view
    chart = view["charts"][0]
    assert chart["title"] == "C" and chart["labels"] == ["apex_temperature"]
    assert chart["finite"][0] > 10 and chart["nonFinite"] == [0], chart
    assert chart["xmax"] - chart["xmin"] == pytest.approx(DAY, abs=60)
    assert page.inner_text("#status") and "failed" not in page.inner_text("#status")
    stroke = page.evaluate(COUNT_STROKE_PIXELS, 1)
    assert stroke["n"] > 300, f"only {stroke['n']} pixels of the series colour {stroke['color']} on the canvas"

    # drag across the middle of the chart: every chart zooms and refetches
    box = page.locator("#charts .u-over").first.bounding_box()
    y = box["y"] + box["height"] / 2
    with page.expect_request(lambda r: "/api/v1/data?" in r.url) as refetch:
        page.mouse.move(box["x"] + box["width"] * 0.3, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=8)
        page.mouse.up()
    zoomed = wait_loaded(page, 2)["charts"][0]
    span = zoomed["xmax"] - zoomed["xmin"]
    assert chart["xmin"] < zoomed["xmin"] < zoomed["xmax"] < chart["xmax"]
    assert span == pytest.approx(0.3 * DAY, rel=0.05)
    params = parse_qs(urlsplit(refetch.value.url).query)
    assert params["target"] == [TEMPERATURE] and params["format"] == ["columns"]
    assert float(params["from"][0]) / 1000 == pytest.approx(zoomed["xmin"], abs=1)
    assert float(params["to"][0]) / 1000 == pytest.approx(zoomed["xmax"], abs=1)
    assert int(params["maxDataPoints"][0]) == page.evaluate("document.querySelector('#charts .plot').clientWidth")
    assert zoomed["finite"][0] > 0 and "zoom=" in page.url
    assert page.is_visible("#reset")

    # the link reproduces the view in a new page
    other = page.context.new_page()
    other.goto(page.url)
    again = wait_loaded(other, 1)["charts"][0]
    assert again["labels"] == ["apex_temperature"]
    assert (again["xmin"], again["xmax"]) == pytest.approx((zoomed["xmin"], zoomed["xmax"]), abs=0.01)
    other.close()

    # double-click: back to the preset's 24 h
    page.dblclick("#charts .u-over")
    back = wait_loaded(page, 3)["charts"][0]
    assert back["xmax"] - back["xmin"] == pytest.approx(DAY, abs=60)
    assert "zoom=" not in page.url and not page.is_visible("#reset")
    assert all(math.isfinite(v) for v in (back["xmin"], back["xmax"]))

    page.screenshot(path=os.path.join(artifacts_dir(), "quicklook.png"), full_page=True)
    assert page.problems == []


def test_root_serves_page_to_browsers_and_json_to_grafana(stack, bridge):
    html = requests.get(stack.http + "/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
                        timeout=10)
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    assert 'src="static/quicklook.js"' in html.text

    grafana = requests.get(stack.http + "/", headers={"Accept": "application/json, text/plain, */*"}, timeout=10)
    assert grafana.status_code == 200 and grafana.headers["Content-Type"].startswith("application/json")
    assert grafana.json()["status"] == "ok"

    for path, kind in [("/static/vendor/uPlot.iife.min.js", "javascript"), ("/static/vendor/uPlot.min.css", "css"),
                       ("/static/quicklook.js", "javascript"), ("/static/quicklook.css", "css")]:
        r = requests.get(stack.http + path, timeout=10)
        assert r.status_code == 200, f"{path}: {r.status_code} (the vendor files are built by `make web`)"
        assert kind in r.headers["Content-Type"], (path, r.headers["Content-Type"])
