/* sisock quicklook: pick fields of the data nodes and plot them with uPlot.
 *
 * Everything comes from the bridge's REST API (api/v1/nodes, api/v1/fields,
 * api/v1/data?format=columns), addressed relative to the page so it also
 * works behind a reverse-proxy prefix. The view (fields, range, zoom,
 * refresh, time zone) lives in the URL hash, so a link reproduces it:
 *
 *   #t=node::field&t=node::other&range=24h&refresh=30&tz=local
 *   #t=node::field&range=custom&from=2024-05-01T00:00:00Z&to=2024-05-02T00:00:00Z
 *   ...&zoom=<ISO time>/<ISO time>
 *
 * Hook for tests and scripts: window.quicklook = {charts, state, loads,
 * lastQuery, ready}; `charts` are the uPlot instances (one per unit, top to
 * bottom), `loads` counts finished data loads, `ready` is a promise resolved
 * after the first one. <body data-state> is "loading", "ready" or "error".
 */
(() => {
  "use strict";

  const PRESETS = { "15m": 15 * 60e3, "6h": 6 * 3600e3, "24h": 24 * 3600e3, "7d": 7 * 86400e3 };
  const DEFAULT_RANGE = "6h";
  const REFRESH = [0, 5, 30, 60, 300];
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
  const CHART_HEIGHT = 260;
  // The time axis in 24-hour notation (uPlot's own default uses am/pm); see
  // uPlot's axis.values: [tick size s, format, year/month/day/hour/minute/second
  // rollover suffixes, 1 = append suffix].
  const TIME_TICKS = [
    [365 * 86400, "{YYYY}", null, null, null, null, null, null, 1],
    [28 * 86400, "{MMM}", "\n{YYYY}", null, null, null, null, null, 1],
    [86400, "{MM}-{DD}", "\n{YYYY}", null, null, null, null, null, 1],
    [60, "{HH}:{mm}", "\n{YYYY}-{MM}-{DD}", null, "\n{MM}-{DD}", null, null, null, 1],
    [1, ":{ss}", "\n{YYYY}-{MM}-{DD} {HH}:{mm}", null, "\n{MM}-{DD} {HH}:{mm}", null, "\n{HH}:{mm}", null, 1],
    [0.001, ":{ss}.{fff}", "\n{YYYY}-{MM}-{DD} {HH}:{mm}", null, "\n{MM}-{DD} {HH}:{mm}", null, "\n{HH}:{mm}", null, 1],
  ];

  const $ = (id) => document.getElementById(id);

  const state = { targets: [], range: DEFAULT_RANGE, from: null, to: null, zoom: null, refresh: 0, tz: "utc" };
  let markReady;
  const hook = {
    charts: [],
    state,
    loads: 0,
    lastQuery: null,
    ready: new Promise((resolve) => { markReady = resolve; }),
  };
  window.quicklook = hook;

  let nodes = [];   // node names, from api/v1/nodes
  let fields = [];  // field records, from api/v1/fields
  let chartKey = "";  // what the current charts show; new series set => new charts
  let inflight = null;
  let timer = null;

  // -- small helpers ----------------------------------------------------

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "dataset") Object.assign(node.dataset, value);
      else node[key] = value;
    }
    node.append(...children);
    return node;
  }

  function parseTime(text) {
    if (!text) return null;
    const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
    return Number.isFinite(ms) ? ms : null;
  }

  const iso = (ms) => new Date(Math.round(ms)).toISOString().replace(".000Z", "Z");

  // datetime-local inputs hold wall-clock text: UTC or local, as chosen.
  function toInput(ms) {
    const shift = state.tz === "utc" ? 0 : new Date(ms).getTimezoneOffset() * 60e3;
    return new Date(Math.round((ms - shift) / 1e3) * 1e3).toISOString().slice(0, 19);
  }

  function fromInput(text) {
    if (!text) return null;
    const ms = Date.parse(state.tz === "utc" ? text + "Z" : text);
    return Number.isFinite(ms) ? ms : null;
  }

  function tzName() {
    if (state.tz === "utc") return "UTC";
    return `local, ${Intl.DateTimeFormat().resolvedOptions().timeZone}`;
  }

  function formatTime(ms) {
    return toInput(ms).replace("T", " ") + (state.tz === "utc" ? " UTC" : " local");
  }

  function setStatus(text, isError = false) {
    const line = $("status");
    line.textContent = text;
    line.classList.toggle("error", isError);
  }

  function setState(value) {
    document.body.dataset.state = value;
  }

  /** GET a JSON resource of the API; a non-2xx answer throws its message. */
  async function api(path, signal) {
    const res = await fetch(path, { headers: { Accept: "application/json" }, signal });
    const text = await res.text();
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      // reported below
    }
    if (!res.ok) {
      const why = body && typeof body.message === "string" ? body.message : text.trim().slice(0, 200);
      throw new Error(`${res.status} ${res.statusText}${why ? ": " + why : ""}`);
    }
    if (body === null) throw new Error(`${path.split("?")[0]} did not answer JSON`);
    return body;
  }

  // -- the view in the URL hash -----------------------------------------

  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    state.targets = [...new Set(params.getAll("t").filter(Boolean))];
    const range = params.get("range");
    state.range = range in PRESETS || range === "custom" ? range : DEFAULT_RANGE;
    state.from = parseTime(params.get("from"));
    state.to = parseTime(params.get("to"));
    if (state.range === "custom" && !(state.from < state.to)) state.range = DEFAULT_RANGE;
    const zoom = (params.get("zoom") || "").split("/").map(parseTime);
    state.zoom = zoom.length === 2 && zoom[0] < zoom[1] ? { from: zoom[0], to: zoom[1] } : null;
    const refresh = Number(params.get("refresh"));
    state.refresh = REFRESH.includes(refresh) ? refresh : 0;
    state.tz = params.get("tz") === "local" ? "local" : "utc";
  }

  function writeHash() {
    const encode = (value) => encodeURIComponent(value).replace(/%3A/gi, ":").replace(/%2F/gi, "/");
    const parts = state.targets.map((t) => ["t", t]);
    parts.push(["range", state.range]);
    if (state.range === "custom") parts.push(["from", iso(state.from)], ["to", iso(state.to)]);
    if (state.zoom) parts.push(["zoom", `${iso(state.zoom.from)}/${iso(state.zoom.to)}`]);
    if (state.refresh) parts.push(["refresh", state.refresh]);
    if (state.tz !== "utc") parts.push(["tz", state.tz]);
    const hash = "#" + parts.map(([k, v]) => `${k}=${encode(v)}`).join("&");
    if (hash !== location.hash) history.replaceState(null, "", hash);
  }

  /** The time range to show, epoch ms. */
  function view() {
    if (state.zoom) return { ...state.zoom };
    if (state.range === "custom") return { from: state.from, to: state.to };
    const to = Date.now();
    return { from: to - PRESETS[state.range], to };
  }

  // -- controls ---------------------------------------------------------

  function syncControls() {
    for (const button of document.querySelectorAll(".presets button")) {
      button.setAttribute("aria-pressed", String(button.dataset.range === state.range));
    }
    $("custom").hidden = state.range !== "custom";
    if (state.range === "custom") {
      for (const [id, ms] of [["from", state.from], ["to", state.to]]) {
        if (document.activeElement !== $(id)) $(id).value = toInput(ms);
      }
    }
    for (const label of document.querySelectorAll(".tzname")) label.textContent = `(${tzName()})`;
    $("tz").value = state.tz;
    $("refresh").value = String(state.refresh);
    $("reset").hidden = !state.zoom;
    for (const box of $("fields").querySelectorAll("input[type=checkbox]")) {
      box.checked = state.targets.includes(box.value);
    }
    const n = state.targets.length;
    $("picked").textContent = n ? `${n} field${n > 1 ? "s" : ""} selected` : "No field selected";
    $("clear").hidden = !n;
    $("hint").hidden = n > 0;
  }

  function renderFields() {
    const byNode = new Map(nodes.map((node) => [node, []]));
    for (const field of fields) {
      if (!byNode.has(field.node)) byNode.set(field.node, []);
      byNode.get(field.node).push(field);
    }
    const groups = [];
    for (const [node, list] of byNode) {
      const group = el("details", { open: true, dataset: { node } },
        el("summary", {}, node, " ", el("span", { className: "count" }, `(${list.length})`)));
      for (const field of list) {
        const plottable = field.type === "number";
        const box = el("input", { type: "checkbox", value: field.target, disabled: !plottable });
        const words = [field.target, field.units, field.description].filter(Boolean).join(" ");
        const title = [field.target, field.description, plottable ? "" : `(${field.type}: not plotted)`];
        group.append(el("label", { title: title.filter(Boolean).join("\n"), dataset: { search: words.toLowerCase() } },
          box, el("span", {}, field.field), field.units ? el("span", { className: "units" }, field.units) : ""));
      }
      if (!list.length) group.append(el("div", { className: "empty" }, "no fields"));
      groups.push(group);
    }
    if (!groups.length) groups.push(el("div", { className: "empty" }, "No data nodes are registered."));
    $("fields").replaceChildren(...groups);
    applyFilter();
    syncControls();
  }

  function applyFilter() {
    const words = $("filter").value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const group of $("fields").querySelectorAll("details")) {
      let shown = 0;
      for (const label of group.querySelectorAll("label")) {
        label.hidden = !words.every((w) => label.dataset.search.includes(w));
        shown += label.hidden ? 0 : 1;
      }
      group.hidden = shown === 0 && !(words.length === 0 || words.every((w) => group.dataset.node.includes(w)));
    }
  }

  async function loadFields() {
    try {
      const [nodeList, fieldList] = await Promise.all([api("api/v1/nodes"), api("api/v1/fields")]);
      nodes = nodeList.map((n) => n.node);
      fields = fieldList;
      renderFields();
    } catch (err) {
      setStatus(`Listing the fields failed: ${err.message}`, true);
      setState("error");
    }
  }

  // -- charts -----------------------------------------------------------

  function chartWidth() {
    const plot = document.querySelector("#charts .plot");
    return Math.max(200, Math.floor(plot ? plot.clientWidth : $("charts").clientWidth - 18));
  }

  // The same width for every chart's y axis (unless its labels need more)
  // keeps the plot areas, and so their time axes, lined up.
  function yAxisSize(u, values) {
    const longest = Math.max(0, ...(values || []).map((v) => String(v).length));
    return Math.max(64, 14 + longest * 7);
  }

  function destroyCharts() {
    for (const u of hook.charts) u.destroy();
    hook.charts = [];
    $("charts").replaceChildren();
    chartKey = "";
  }

  /** One chart per unit (fields without units share one), one series per field. */
  function draw(seriesList, range) {
    const groups = new Map();
    for (const s of seriesList) {
      const units = s.units ?? "";
      if (!groups.has(units)) groups.set(units, []);
      groups.get(units).push(s);
    }
    const key = JSON.stringify([state.tz, [...groups].map(([units, list]) => [units, list.map((s) => s.target)])]);
    const xMin = range.from / 1e3;
    const xMax = range.to / 1e3;
    if (key !== chartKey) {
      destroyCharts();
      chartKey = key;
      const manyNodes = new Set(seriesList.map((s) => s.node)).size > 1;
      for (const [units, list] of groups) {
        hook.charts.push(makeChart(units, list, manyNodes));
      }
    }
    [...groups.values()].forEach((list, i) => {
      const u = hook.charts[i];
      u.setData(align(list), false);
      u.setScale("x", { min: xMin, max: xMax });
    });
  }

  /** uPlot's columns: one shared time axis (seconds) and a column per series. */
  function align(list) {
    const tables = list.map((s) => [
      s.time.map((t) => t / 1e3),
      s.value.map((v) => (typeof v === "number" && Number.isFinite(v) ? v : null)),
    ]);
    return tables.length === 1 ? tables[0] : uPlot.join(tables);
  }

  function makeChart(units, list, manyNodes) {
    const plot = el("div", { className: "plot" });
    $("charts").append(el("div", { className: "chart", dataset: { units } }, plot));
    const opts = {
      title: units || "(no units)",
      width: chartWidth(),
      height: CHART_HEIGHT,
      scales: { x: { time: true } },
      series: [
        { label: state.tz === "utc" ? "time (UTC)" : "time (local)", value: "{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}" },
        ...list.map((s, i) => ({
          label: manyNodes ? s.target : s.field,
          stroke: COLORS[i % COLORS.length],
          width: 1.5,
          spanGaps: true,
        })),
      ],
      axes: [{ values: TIME_TICKS }, { size: yAxisSize }],
      cursor: {
        sync: { key: "quicklook" },
        drag: { x: true, y: false, setScale: false, dist: 5 },
        // Our own double-click: back to the chosen range, on every chart.
        bind: { dblclick: () => (e) => { if (e.button === 0) resetZoom(); } },
      },
      hooks: { setSelect: [onSelect] },
    };
    if (state.tz === "utc") opts.tzDate = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
    return new uPlot(opts, [[], ...list.map(() => [])], plot);
  }

  /** A drag across a chart: zoom every chart there, then fetch that range
   *  at full resolution. */
  function onSelect(u) {
    const { left, width } = u.select;
    if (width < 2) return;
    const from = u.posToVal(left, "x") * 1e3;
    const to = u.posToVal(left + width, "x") * 1e3;
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    if (!(to > from)) return;
    state.zoom = { from, to };
    for (const chart of hook.charts) chart.setScale("x", { min: from / 1e3, max: to / 1e3 });
    load();
  }

  function resetZoom() {
    if (!state.zoom) return;
    state.zoom = null;
    load();
  }

  // -- data -------------------------------------------------------------

  function reschedule() {
    clearTimeout(timer);
    timer = state.refresh ? setTimeout(load, state.refresh * 1e3) : null;
  }

  async function load() {
    writeHash();
    syncControls();
    if (inflight) inflight.abort();
    clearTimeout(timer);
    if (typeof uPlot === "undefined") {
      setStatus("The charting library (static/vendor/uPlot.iife.min.js) did not load; build it with `make web`.", true);
      setState("error");
      return;
    }
    if (!state.targets.length) {
      destroyCharts();
      setStatus("");
      setState("ready");
      markReady();
      reschedule();
      return;
    }
    const ctl = new AbortController();
    inflight = ctl;
    const range = view();
    const query = new URLSearchParams();
    for (const target of state.targets) query.append("target", target);
    query.set("from", String(Math.floor(range.from)));
    query.set("to", String(Math.ceil(range.to)));
    query.set("maxDataPoints", String(chartWidth()));
    query.set("format", "columns");
    setState("loading");
    try {
      const body = await api(`api/v1/data?${query}`, ctl.signal);
      draw(body.series, range);
      hook.lastQuery = { from: range.from, to: range.to, maxDataPoints: Number(query.get("maxDataPoints")) };
      hook.loads += 1;
      const points = body.series.reduce((n, s) => n + s.time.length, 0);
      const empty = body.series.filter((s) => !s.time.length).map((s) => s.target);
      setStatus(`${body.series.length} series, ${points} points, ${formatTime(range.from)} to ${formatTime(range.to)}`
        + (state.zoom ? " (zoomed)" : "") + (empty.length ? `; no data for ${empty.join(", ")}` : ""));
      setState("ready");
      markReady();
    } catch (err) {
      if (err.name === "AbortError") return;
      setStatus(`Loading the data failed: ${err.message}`, true);
      setState("error");
    } finally {
      if (inflight === ctl) {
        inflight = null;
        reschedule();
      }
    }
  }

  // -- wiring -----------------------------------------------------------

  function start() {
    readHash();
    syncControls();

    for (const button of document.querySelectorAll(".presets button")) {
      button.addEventListener("click", () => {
        const chosen = button.dataset.range;
        if (chosen === "custom" && state.range !== "custom") {
          const current = view();
          state.from = Math.floor(current.from / 1e3) * 1e3;
          state.to = Math.ceil(current.to / 1e3) * 1e3;
        }
        state.range = chosen;
        state.zoom = null;
        load();
      });
    }
    for (const id of ["from", "to"]) {
      $(id).addEventListener("change", () => {
        const from = fromInput($("from").value);
        const to = fromInput($("to").value);
        if (from === null || to === null || !(from < to)) {
          setStatus("The custom range needs a start before its end.", true);
          return;
        }
        Object.assign(state, { from, to, zoom: null });
        load();
      });
    }
    $("tz").addEventListener("change", () => {
      state.tz = $("tz").value;
      load();
    });
    $("refresh").addEventListener("change", () => {
      state.refresh = Number($("refresh").value);
      writeHash();
      reschedule();
    });
    $("reset").addEventListener("click", resetZoom);
    $("filter").addEventListener("input", applyFilter);
    $("clear").addEventListener("click", () => {
      state.targets = [];
      state.zoom = null;
      load();
    });
    $("fields").addEventListener("change", (e) => {
      const box = e.target;
      state.targets = state.targets.filter((t) => t !== box.value);
      if (box.checked) state.targets.push(box.value);
      load();
    });
    window.addEventListener("hashchange", () => {
      readHash();
      load();
    });
    document.addEventListener("visibilitychange", () => {
      // A hidden tab stops refreshing; coming back catches up at once.
      if (document.hidden) clearTimeout(timer);
      else if (state.refresh && !inflight) load();
    });

    let lastWidth = 0;
    new ResizeObserver(() => {
      const width = chartWidth();
      if (width === lastWidth) return;
      lastWidth = width;
      for (const u of hook.charts) u.setSize({ width, height: CHART_HEIGHT });
    }).observe($("charts"));

    loadFields();
    load();
  }

  start();
})();
