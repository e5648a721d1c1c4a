// The overview's charts: traces and errors, p50 / p95 duration, tokens and cost over time, and the
// scatter of duration against start (Jaeger's). Drawn with uPlot (static/studio/vendor/uplot),
// which is fetched, with the data (/api/traces/stats/ for the page's filter), only once the page
// is idle: the rows render first. Clicking a scatter point opens its trace; dragging over a time
// range on any chart filters the overview to it. Without JavaScript the section stays hidden.
(function () {
  "use strict";

  let library = null; // a promise of window.uPlot, once asked for

  function loadLibrary(section) {
    if (window.uPlot) return Promise.resolve(window.uPlot);
    if (library) return library;
    const css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = section.dataset.uplotCss;
    document.head.appendChild(css);
    library = new Promise(function (resolve, reject) {
      const script = document.createElement("script");
      script.src = section.dataset.uplotJs;
      script.onload = function () { resolve(window.uPlot); };
      script.onerror = function () { library = null; reject(new Error("uPlot did not load")); };
      document.head.appendChild(script);
    });
    return library;
  }

  function color(name, fallback) {
    const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function duration(ms) {
    if (ms == null) return "–";
    if (ms === 0) return "0";
    if (ms < 1) return (ms * 1000).toPrecision(3) + " µs";
    if (ms < 1000) return ms.toPrecision(3) + " ms";
    if (ms < 60000) return (ms / 1000).toPrecision(3) + " s";
    return (ms / 60000).toFixed(1) + " min";
  }

  function compact(n) {
    if (n == null) return "–";
    const abs = Math.abs(n);
    if (abs >= 1e9) return (n / 1e9).toFixed(1) + "G";
    if (abs >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (abs >= 1e3) return (n / 1e3).toFixed(1) + "k";
    return String(Math.round(n * 100) / 100);
  }

  function usd(n) {
    if (n == null) return "–";
    if (n === 0) return "$0";
    if (n < 0.01) return "$" + n.toFixed(4);
    if (n < 1000) return "$" + n.toFixed(2);
    return "$" + Math.round(n).toLocaleString();
  }

  // Dragging over a range: the overview of that range (the URL's since / until).
  function filterTo(section, fromSeconds, toSeconds) {
    const url = new URL(section.dataset.filterUrl, window.location.href);
    url.searchParams.delete("after");
    url.searchParams.delete("before");
    url.searchParams.delete("offset");
    url.searchParams.set("range", "custom");
    url.searchParams.set("since", new Date(fromSeconds * 1000).toISOString());
    url.searchParams.set("until", new Date(toSeconds * 1000).toISOString());
    window.location.assign(url.toString());
  }

  function dragToFilter(section) {
    return function (u) {
      const width = u.select.width;
      if (width < 4) return;
      const from = u.posToVal(u.select.left, "x");
      const to = u.posToVal(u.select.left + width, "x");
      u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
      filterTo(section, from, to);
    };
  }

  function options(section, plot, extra) {
    const width = Math.max(plot.clientWidth, 200);
    return Object.assign(
      {
        width: width,
        height: 150,
        cursor: { drag: { x: true, y: false, setScale: false } },
        hooks: { setSelect: [dragToFilter(section)] },
        legend: { live: true },
      },
      extra
    );
  }

  function axis(values, extra) {
    const soft = color("--fg-soft", "#5b6470");
    const grid = color("--border", "#d9dde3");
    return Object.assign(
      {
        stroke: soft,
        grid: { stroke: grid, width: 1 },
        ticks: { stroke: grid, width: 1 },
        values: values ? function (u, ticks) { return ticks.map(values); } : undefined,
      },
      extra || {}
    );
  }

  function draw(section, data, uPlot) {
    const accent = color("--accent", "#2f6fde");
    const error = color("--error", "#c62828");
    const warn = color("--warn", "#9a6700");
    const ok = color("--ok", "#1a7f37");
    const b = data.buckets;
    const bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.8, 40] }) : undefined;
    const charts = [];
    const slot = function (name) { return section.querySelector('[data-chart="' + name + '"] .chart-plot'); };

    let plot = slot("volume");
    charts.push(new uPlot(options(section, plot, {
      series: [
        {},
        { label: "Traces", stroke: accent, fill: accent + "55", paths: bars, value: function (u, v) { return compact(v); } },
        { label: "Errors", stroke: error, fill: error + "88", paths: bars, value: function (u, v) { return compact(v); } },
      ],
      axes: [axis(), axis(compact)],
    }), [b.time, b.traces, b.errors], plot));

    plot = slot("duration");
    charts.push(new uPlot(options(section, plot, {
      series: [
        {},
        { label: "p50", stroke: accent, width: 1.5, spanGaps: false, value: function (u, v) { return duration(v); } },
        { label: "p95", stroke: warn, width: 1.5, spanGaps: false, value: function (u, v) { return duration(v); } },
      ],
      axes: [axis(), axis(duration, { size: 60 })],
    }), [b.time, b.p50_ms, b.p95_ms], plot));

    plot = slot("usage");
    charts.push(new uPlot(options(section, plot, {
      series: [
        {},
        { label: "Tokens", stroke: accent, width: 1.5, scale: "tokens", value: function (u, v) { return compact(v); } },
        { label: "Cost", stroke: ok, width: 1.5, scale: "usd", value: function (u, v) { return usd(v); } },
      ],
      axes: [axis(), axis(compact, { scale: "tokens" }), axis(usd, { scale: "usd", side: 1, grid: { show: false }, size: 72 })],
    }), [b.time, b.tokens, b.cost_usd], plot));

    // The scatter: one x per point (sorted by start), OK and error points as two series.
    const p = data.points;
    const fine = p.duration_ms.map(function (d, i) { return p.error[i] ? null : d; });
    const failed = p.duration_ms.map(function (d, i) { return p.error[i] ? d : null; });
    const dot = function (stroke) {
      return { show: true, size: 6, stroke: stroke, fill: stroke + "99", width: 1 };
    };
    plot = slot("scatter");
    const scatter = new uPlot(options(section, plot, {
      scales: { x: { time: true, range: [b.time[0], b.time[b.time.length - 1] + data.bucket_seconds] } },
      series: [
        {},
        { label: "OK", stroke: accent, paths: function () { return null; }, points: dot(accent), value: function (u, v) { return duration(v); } },
        { label: "Error", stroke: error, paths: function () { return null; }, points: dot(error), value: function (u, v) { return duration(v); } },
      ],
      axes: [axis(), axis(duration, { size: 60 })],
    }), [p.time, fine, failed], plot);
    charts.push(scatter);
    section.scatter = scatter;

    // A click (not a drag) near a point opens its trace.
    let down = null;
    scatter.over.addEventListener("mousedown", function (event) { down = [event.clientX, event.clientY]; });
    scatter.over.addEventListener("click", function (event) {
      if (down && Math.hypot(event.clientX - down[0], event.clientY - down[1]) > 3) return;
      const nearest = nearestPoint(scatter, p, event.offsetX, event.offsetY);
      if (nearest >= 0) window.location.assign(section.dataset.traceBase + p.trace_id[nearest] + "/");
    });
    scatter.over.addEventListener("mousemove", function (event) {
      const nearest = nearestPoint(scatter, p, event.offsetX, event.offsetY);
      scatter.over.classList.toggle("on-point", nearest >= 0);
    });

    const observer = new ResizeObserver(function () {
      charts.forEach(function (chart) {
        const width = Math.max(chart.root.parentElement.clientWidth, 200);
        if (Math.abs(width - chart.width) > 1) chart.setSize({ width: width, height: chart.height });
      });
    });
    section.querySelectorAll(".chart-plot").forEach(function (el) { observer.observe(el); });
  }

  // The index of the point within 8 CSS pixels of (x, y) in the plot area, or -1.
  function nearestPoint(u, points, x, y) {
    let best = -1;
    let bestDistance = 64;
    for (let i = 0; i < points.time.length; i++) {
      const dx = u.valToPos(points.time[i], "x") - x;
      const dy = u.valToPos(points.duration_ms[i], "y") - y;
      const distance = dx * dx + dy * dy;
      if (distance <= bestDistance) {
        best = i;
        bestDistance = distance;
      }
    }
    return best;
  }

  function summary(section, data) {
    const note = section.querySelector(".charts-note");
    if (!note) return;
    const minutes = data.bucket_seconds / 60;
    const bucket = data.bucket_seconds < 60 ? data.bucket_seconds + " s"
      : minutes < 60 ? minutes + " min"
      : minutes < 1440 ? minutes / 60 + " h" : minutes / 1440 + " d";
    let text = data.count.toLocaleString() + " trace" + (data.count === 1 ? "" : "s") + ", per " + bucket + ".";
    if (data.sampled) text += " The scatter shows " + data.points.time.length.toLocaleString() + " of them: a sample and the slowest.";
    text += " Drag over a time range to filter to it.";
    note.textContent = text;
  }

  function load(section) {
    if (section.dataset.state) return;
    section.dataset.state = "loading";
    section.hidden = false;
    const data = fetch(section.dataset.statsUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("stats: " + response.status);
        return response.json();
      });
    Promise.all([data, loadLibrary(section)])
      .then(function (results) {
        if (!section.isConnected) return;
        summary(section, results[0]);
        if (results[0].count === 0) {
          section.dataset.state = "empty";
          return;
        }
        draw(section, results[0], results[1]);
        section.dataset.state = "ready";
      })
      .catch(function (error) {
        section.dataset.state = "failed";
        const note = section.querySelector(".charts-note");
        if (note) note.textContent = "The charts could not be loaded.";
        console.warn(error);
      });
  }

  // After the rows: when the browser is idle (or soon, where it never says so).
  function later(fn) {
    if (window.requestIdleCallback) window.requestIdleCallback(fn, { timeout: 1500 });
    else setTimeout(fn, 200);
  }

  function start() {
    const section = document.getElementById("charts");
    if (!section || section.dataset.state) return;
    // Shown at once, at its final height, so that nothing below moves when the charts arrive.
    section.hidden = false;
    later(function () { load(section); });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
  // A filter change swaps #results, and the charts with it.
  document.addEventListener("htmx:afterSettle", start);
})();
