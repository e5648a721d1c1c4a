// The trace page's flame graph (an icicle): the tree pane's other view, beside the call tree.
//
// Every span is a box under its parent, as wide as its duration; a parent's children sit side by
// side in start order from its left edge (when they ran concurrently and add up to more than
// the parent, they are shrunk together to fit), so what is left of a box past its children is
// its self time. Boxes are coloured by kind of work, as the time split above the tree.
//
// The data comes once, when the view is first shown, from #flame's data-flame-url
// (studio.trace_page.flame_data: columns, spans in call-tree order, texts formatted by the
// server). It is drawn on a canvas: a box narrower than half a pixel is not drawn, nor its
// subtree (its children are inside it), so a 50,000-span trace draws only what can be seen;
// side by side such boxes make a grey sliver instead, which a click zooms into.
// A click selects the span (through the tree: trace.js opens its panel, as a click on its row
// does) and zooms to it; selecting in the tree outlines the span here. Span text reaches the
// DOM only through textContent.
(function () {
  "use strict";

  const box = document.getElementById("flame");
  const pane = box && box.closest(".tree-pane");
  const tabs = pane && pane.querySelector(".view-tabs");
  if (!box || !tabs || !box.querySelector("canvas").getContext) return;
  const canvas = box.querySelector("canvas");
  const tip = box.querySelector(".flame-tip");
  const note = box.querySelector(".flame-note");
  const tools = pane.querySelector(".flame-tools");
  const resetButton = document.getElementById("flame-reset");
  const treeTab = document.getElementById("tab-tree");
  const flameTab = document.getElementById("tab-flame");
  const tree = document.getElementById("tree");
  const ROW = 18; // px per level
  const MIN_PX = 0.5; // narrower boxes are not drawn, nor anything under them
  const LABEL_PX = 24; // narrower boxes get no label
  const CHAR_PX = 6.6; // about, at the label font
  const MAX_HEIGHT = 16000; // px: deeper levels are cut (a canvas has a size limit)

  let data = null;
  let asked = null; // the promise of the data
  let n = 0;
  let x0 = new Float64Array(0); // left edge, as a fraction of the whole width
  let w = new Float64Array(0); // width, the same
  let end = new Int32Array(0); // one past the last box of the subtree
  let critical = new Uint8Array(0);
  let levels = 0;
  const index = new Map();
  let from = 0; // the zoomed range, as fractions of the whole width
  let to = 1;
  let selectedId = tree ? tree.getAttribute("data-selected") || "" : "";
  let hover = -1;
  let treeScroll = 0;
  let shownLevels = []; // per level: [box, left px, right px, ...] of the boxes drawn
  let slivers = []; // [from, to, spans]: runs of boxes too narrow to draw; box -2 - k is the kth
  let colours = {};

  function readColours() {
    const style = getComputedStyle(document.documentElement);
    const value = (name) => style.getPropertyValue(name).trim() || "#888";
    colours = {
      llm: value("--llm"),
      tool: value("--tool"),
      agent: value("--agent"),
      formatter: value("--formatter"),
      retrieval: value("--embedding"),
      other: value("--other"),
      error: value("--error"),
      warn: value("--warn"),
      fg: value("--fg"),
      bg: value("--bg"),
    };
  }

  // Where each box goes: widths in fractions of the whole, children packed from their parent's
  // left edge. One pass in call-tree order (parents before children).
  function place(d) {
    n = d.ids.length;
    x0 = new Float64Array(n);
    w = new Float64Array(n);
    end = new Int32Array(n);
    critical = new Uint8Array(n);
    index.clear();
    const parent = new Int32Array(n);
    const childSum = new Float64Array(n);
    const next = new Float64Array(n); // where a parent's next child goes
    const stack = [];
    let topSum = 0;
    levels = 0;
    for (let i = 0; i < n; i++) {
      const depth = d.depth[i];
      while (stack.length > depth) end[stack.pop()] = i;
      parent[i] = stack.length ? stack[stack.length - 1] : -1;
      stack.push(i);
      if (parent[i] >= 0) childSum[parent[i]] += d.dur[i];
      else topSum += d.dur[i];
      index.set(d.ids[i], i);
      if (depth + 1 > levels) levels = depth + 1;
    }
    while (stack.length) end[stack.pop()] = n;
    const whole = Math.max(d.wall_ns, topSum) || 1;
    let topNext = 0;
    for (let i = 0; i < n; i++) {
      const p = parent[i];
      let scale;
      if (p < 0) {
        scale = 1 / whole;
        x0[i] = topNext;
      } else {
        const own = d.dur[p];
        // Fractions per nanosecond of the parent, shrunk when its children overlap.
        scale = own > 0 ? (w[p] / own) * Math.min(1, own / childSum[p]) : 0;
        x0[i] = next[p];
      }
      w[i] = d.dur[i] * scale;
      next[i] = x0[i];
      if (p < 0) topNext += w[i];
      else next[p] += w[i];
    }
    for (const at of d.critical) critical[at] = 1;
  }

  function draw() {
    if (!data || box.hidden) return;
    const width = box.clientWidth;
    const height = Math.min(Math.max(levels, 1) * ROW, MAX_HEIGHT);
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.height = height + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px " + getComputedStyle(document.body).fontFamily;
    ctx.textBaseline = "middle";
    const perPx = width / (to - from);
    const maxLevel = Math.floor(height / ROW);
    shownLevels = Array.from({ length: maxLevel }, () => []);
    slivers = [];
    const runs = new Array(maxLevel).fill(null); // per level: the run of narrow boxes growing
    const flush = function (depth) {
      const run = runs[depth];
      if (!run) return;
      runs[depth] = null;
      const k = slivers.length;
      slivers.push([run[2], run[3], run[4]]);
      const x = Math.max(run[0], 0);
      const sliverWidth = Math.max(Math.min(run[1], width) - x, 1);
      ctx.fillStyle = colours.other;
      ctx.globalAlpha = hover === -2 - k ? 0.35 : 0.55;
      ctx.fillRect(x, depth * ROW, sliverWidth, ROW - 1);
      ctx.globalAlpha = 1;
      shownLevels[depth].push(-2 - k, x, x + sliverWidth);
    };
    const selected = index.has(selectedId) ? index.get(selectedId) : -1;
    let outline = null;
    let i = 0;
    while (i < n) {
      const depth = data.depth[i];
      const left = (x0[i] - from) * perPx;
      const right = left + w[i] * perPx;
      if (right < 0 || left > width || depth >= maxLevel) {
        i = end[i]; // nothing of its subtree can be seen either
        continue;
      }
      if (right - left < MIN_PX) {
        // Too narrow to draw, and so is its subtree: it joins the sliver of its neighbours.
        const run = runs[depth];
        if (run && left <= run[1] + 1) {
          run[1] = Math.max(run[1], right);
          run[3] = Math.max(run[3], x0[i] + w[i]);
          run[4]++;
        } else {
          flush(depth);
          runs[depth] = [left, right, x0[i], x0[i] + w[i], 1];
        }
        i = end[i];
        continue;
      }
      flush(depth);
      const x = Math.max(left, 0);
      const boxWidth = Math.min(right, width) - x;
      const y = depth * ROW;
      ctx.fillStyle = data.err[i] ? colours.error : colours[data.kinds[data.kind[i]]];
      ctx.globalAlpha = i === hover ? 0.8 : 1;
      ctx.fillRect(x, y, Math.max(boxWidth - (boxWidth > 3 ? 1 : 0), 0.5), ROW - 1);
      ctx.globalAlpha = 1;
      if (critical[i]) {
        ctx.fillStyle = colours.warn;
        ctx.fillRect(x, y + ROW - 4, Math.max(boxWidth - 1, 0.5), 3);
      }
      if (boxWidth >= LABEL_PX) {
        const room = Math.floor((boxWidth - 6) / CHAR_PX);
        let label = data.strings[data.label[i]];
        if (label.length > room) label = room > 1 ? label.slice(0, room - 1) + "…" : "";
        if (label) {
          ctx.fillStyle = "#fff";
          ctx.fillText(label, x + 3, y + (ROW - 1) / 2);
        }
      }
      if (i === selected) outline = [x, y, boxWidth];
      shownLevels[depth].push(i, x, x + boxWidth);
      i++;
    }
    for (let depth = 0; depth < maxLevel; depth++) flush(depth);
    if (outline) {
      ctx.strokeStyle = colours.fg;
      ctx.lineWidth = 2;
      ctx.strokeRect(outline[0] + 1, outline[1] + 1, Math.max(outline[2] - 2, 1), ROW - 3);
    }
    canvas.dataset.selected = selected >= 0 ? data.ids[selected] : "";
    box.dataset.zoom = from + " " + to;
    resetButton.disabled = from === 0 && to === 1;
    note.textContent = n ? "" : "This trace has no spans.";
  }

  function boxAt(event) {
    const bounds = canvas.getBoundingClientRect();
    const x = event.clientX - bounds.left;
    const level = shownLevels[Math.floor((event.clientY - bounds.top) / ROW)];
    if (!level) return -1;
    for (let k = 0; k < level.length; k += 3) {
      if (x >= level[k + 1] && x < level[k + 2] + 0.5) return level[k];
    }
    return -1;
  }

  // Into a sliver: to its extent, or, when that is most of the view already, eight times closer
  // around the pointer (within the sliver).
  function zoomInto(sliver, event) {
    const [start, stop] = sliver;
    const span = to - from;
    if (stop - start < span / 2) {
      from = start;
      to = stop;
    } else {
      const bounds = canvas.getBoundingClientRect();
      const at = from + ((event.clientX - bounds.left) / bounds.width) * span;
      const half = span / 16;
      from = Math.max(start, at - half);
      to = Math.min(stop, from + 2 * half);
      from = Math.max(start, to - 2 * half);
    }
    draw();
  }

  function zoomTo(i) {
    if (i < 0) {
      from = 0;
      to = 1;
    } else if (w[i] > 0) {
      from = x0[i];
      to = x0[i] + w[i];
    }
    draw();
  }

  function showTip(i, event) {
    if (i === -1) {
      tip.hidden = true;
      return;
    }
    tip.textContent = "";
    if (i < -1) {
      const count = slivers[-2 - i][2];
      tip.append(count + (count === 1 ? " span" : " spans") + " too narrow to show: a click zooms in");
      placeTip(event);
      return;
    }
    const title = document.createElement("b");
    title.textContent = data.strings[data.label[i]];
    tip.append(title);
    const facts = [
      data.strings[data.type[i]],
      data.strings[data.du[i]] + " (self " + data.strings[data.self[i]] + ")",
    ];
    if (critical[i]) facts.push("on the critical path");
    if (data.err[i]) facts.push("error");
    tip.append(facts.join(" · "));
    placeTip(event);
  }

  function placeTip(event) {
    tip.hidden = false;
    const bounds = box.getBoundingClientRect();
    let left = event.clientX - bounds.left + 12;
    if (left + tip.offsetWidth > bounds.width) left = Math.max(event.clientX - bounds.left - tip.offsetWidth - 12, 0);
    tip.style.left = left + "px";
    tip.style.top = event.clientY - bounds.top + 16 + "px";
  }

  canvas.addEventListener("mousemove", function (event) {
    const i = boxAt(event);
    if (i !== hover) {
      hover = i;
      draw();
    }
    showTip(i, event);
  });
  canvas.addEventListener("mouseleave", function () {
    hover = -1;
    tip.hidden = true;
    draw();
  });
  canvas.addEventListener("click", function (event) {
    const i = boxAt(event);
    if (i === -1) return;
    if (i < -1) {
      zoomInto(slivers[-2 - i], event);
      return;
    }
    selectedId = data.ids[i];
    zoomTo(i);
    // trace.js selects it in the tree and opens its panel (and says so: studio:selected).
    document.dispatchEvent(new CustomEvent("studio:goto", { detail: { id: data.ids[i] } }));
  });
  resetButton.addEventListener("click", () => zoomTo(-1));
  box.addEventListener("keydown", function (event) {
    if (event.key === "Escape") zoomTo(-1);
  });

  document.addEventListener("studio:selected", function (event) {
    selectedId = event.detail.id;
    const i = index.has(selectedId) ? index.get(selectedId) : -1;
    // A span chosen elsewhere (the tree, a link) that this view cannot show: zoom to it.
    if (i >= 0 && w[i] > 0) {
      const span = to - from;
      const tooNarrow = w[i] / span < 2 / Math.max(box.clientWidth, 1);
      if (tooNarrow || x0[i] + w[i] <= from || x0[i] >= to) {
        from = x0[i];
        to = x0[i] + w[i];
      }
    }
    draw();
  });

  function load() {
    if (!asked) {
      note.textContent = "Loading the flame graph…";
      asked = fetch(box.getAttribute("data-flame-url"), { headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (found) {
          data = found;
          place(data);
          draw();
        })
        .catch(function (error) {
          asked = null; // showing the view again tries again
          note.textContent = "The flame graph could not be loaded (" + error.message + ").";
        });
    }
    return asked;
  }

  function show(flame) {
    if (flame === !box.hidden) return;
    treeTab.setAttribute("aria-selected", flame ? "false" : "true");
    flameTab.setAttribute("aria-selected", flame ? "true" : "false");
    tools.hidden = !flame;
    box.hidden = !flame;
    pane.classList.toggle("flame-view", flame);
    if (flame) {
      treeScroll = pane.scrollTop;
      pane.scrollTop = 0;
      readColours();
      if (data) draw();
      else load();
    } else {
      tip.hidden = true;
      pane.scrollTop = treeScroll;
      // trace.js draws the rows in view again (and brings the selected one into view).
      document.dispatchEvent(new CustomEvent("studio:treeshown"));
    }
  }

  treeTab.addEventListener("click", () => show(false));
  flameTab.addEventListener("click", () => show(true));
  tabs.addEventListener("keydown", function (event) {
    if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
    const flame = event.key === "ArrowRight";
    show(flame);
    (flame ? flameTab : treeTab).focus();
  });
  window.addEventListener("resize", function () {
    if (!box.hidden) draw();
  });
  // Shown (and marked) only here: without JavaScript there is no flame graph to switch to.
  treeTab.setAttribute("aria-selected", "true");
  flameTab.setAttribute("aria-selected", "false");
  tabs.hidden = false;
})();
