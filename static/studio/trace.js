// The trace page: the call tree (expand and collapse, filter, keyboard) and the span panel.
//
// The server sends every row as compact JSON (#tree-data) and the first rows as HTML, for reading
// without JavaScript. This file replaces those with a virtual list: only the rows in view exist
// in the DOM, so a trace of 50,000 spans scrolls, opens and filters as fast as one of 50. Rows
// are in depth-first order with their depth, so a span's descendants are the rows after it that
// are deeper; everything below is a scan over typed arrays. Span text only ever reaches the DOM
// through textContent and attribute setters, never as HTML.
(function () {
  "use strict";

  const tree = document.getElementById("tree");
  const source = document.getElementById("tree-data");
  if (!tree || !source) return;
  const data = JSON.parse(source.textContent);
  const pane = tree.closest(".tree-pane");
  const panel = document.getElementById("span-panel");
  const panelUrl = tree.getAttribute("data-panel-url");
  const ZERO_SPAN_ID = "0000000000000000";
  const SVG = "http://www.w3.org/2000/svg";
  const ROW = 24; // px, as .tree.virtual .r in trace.css
  const OVERSCAN = 20;
  const ERROR = 1;
  const ORPHAN = 2;

  const rows = data.rows;
  const n = rows.length;
  const total = data.duration || 1;
  const depth = new Int32Array(n);
  const parent = new Int32Array(n);
  const end = new Int32Array(n); // one past the last row of the subtree
  const collapsed = new Uint8Array(n);
  const matched = new Uint8Array(n);
  const index = new Map();
  let visible = new Int32Array(0); // row indices in display order
  const position = new Int32Array(n); // row index -> place in `visible`, -1 when hidden
  let selected = -1;
  let cursor = -1;
  let wanted = ""; // the panel URL asked for last: older answers are not swapped in

  (function build() {
    const stack = [];
    for (let i = 0; i < n; i++) {
      const d = rows[i][1];
      depth[i] = d;
      while (stack.length > d) end[stack.pop()] = i;
      parent[i] = stack.length ? stack[stack.length - 1] : -1;
      stack.push(i);
      index.set(rows[i][0], i);
    }
    while (stack.length) end[stack.pop()] = n;
    const chosen = tree.getAttribute("data-selected");
    if (chosen && index.has(chosen)) selected = index.get(chosen);
  })();

  const hasChildren = (i) => end[i] > i + 1;
  const isShown = (i) => position[i] >= 0;

  function layout() {
    const list = new Int32Array(n);
    let count = 0;
    let hideDepth = Infinity;
    for (let i = 0; i < n; i++) {
      const d = depth[i];
      if (d <= hideDepth) hideDepth = Infinity;
      if (d > hideDepth) {
        position[i] = -1;
        continue;
      }
      position[i] = count;
      list[count++] = i;
      if (collapsed[i]) hideDepth = d;
    }
    visible = list.subarray(0, count);
    tree.style.height = count * ROW + "px";
  }

  // -- Drawing: the rows in view, reused while they stay in view ---------------------------------

  const drawn = new Map(); // row index -> element
  let frame = 0;

  function formatSignificant(value) {
    const text = String(Number(value.toPrecision(3)));
    return text.includes("e") ? String(Math.round(value)) : text;
  }

  function formatDuration(ns) {
    if (ns < 0) return "-" + formatDuration(-ns);
    if (ns < 1e3) return ns + " ns";
    if (ns < 1e6) return formatSignificant(ns / 1e3) + " µs";
    if (ns < 1e9) return formatSignificant(ns / 1e6) + " ms";
    const seconds = ns / 1e9;
    if (seconds < 60) return formatSignificant(seconds) + " s";
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min " + Math.floor(seconds % 60) + " s";
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text) el.textContent = text;
    return el;
  }

  function create(i) {
    const [id, d, start, duration, type, flags, tokensIn, tokensOut, name, label] = rows[i];
    const kind = data.types[type];
    const row = element("div", "r d" + Math.min(d, 32) + " k-" + kind);
    row.id = "s-" + id;
    row.setAttribute("role", "treeitem");
    row.setAttribute("aria-level", String(d + 1));
    const cell = element("span", "n");
    if (hasChildren(i)) {
      const toggle = element("button", "tg");
      toggle.type = "button";
      toggle.tabIndex = -1;
      toggle.setAttribute("aria-hidden", "true");
      cell.append(toggle);
    }
    const link = element("a");
    link.href = "?span=" + encodeURIComponent(id);
    link.tabIndex = -1;
    link.title = data.strings[name];
    link.append(element("b", "badge badge-" + kind, kind));
    link.append(" " + data.strings[label]);
    cell.append(link);
    if (flags & ORPHAN) {
      const mark = element("span", "orphan", "parent not received");
      mark.title = "Its parent span was never received";
      cell.append(mark);
      row.classList.add("o");
    }
    if (flags & ERROR) {
      const mark = element("span", "err", "error");
      mark.title = "Status ERROR";
      cell.append(mark);
      row.classList.add("e");
    }
    row.append(cell, element("span", "du", formatDuration(duration)));
    const tokens = tokensIn || tokensOut
      ? tokensIn.toLocaleString("en-US") + " → " + tokensOut.toLocaleString("en-US") : "";
    row.append(element("span", "tk", tokens));
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "bar");
    svg.setAttribute("aria-hidden", "true");
    const rect = document.createElementNS(SVG, "rect");
    const x = Math.min((start * 100) / total, 99.85);
    rect.setAttribute("x", x.toFixed(2) + "%");
    rect.setAttribute("width", Math.min(Math.max((duration * 100) / total, 0.15), 100 - x).toFixed(2) + "%");
    rect.setAttribute("height", "100%");
    svg.append(rect);
    row.append(svg);
    return row;
  }

  function refresh(row, i) {
    row.style.top = position[i] * ROW + "px";
    if (hasChildren(i)) row.setAttribute("aria-expanded", collapsed[i] ? "false" : "true");
    if (i === selected) row.setAttribute("aria-selected", "true");
    else row.removeAttribute("aria-selected");
    row.classList.toggle("m", matched[i] === 1);
    row.classList.toggle("cur", i === cursor);
  }

  function draw() {
    frame = 0;
    const top = pane.scrollTop - tree.offsetTop;
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(visible.length, Math.ceil((top + pane.clientHeight) / ROW) + OVERSCAN);
    const keep = new Set();
    for (let p = first; p < last; p++) keep.add(visible[p]);
    if (cursor >= 0 && isShown(cursor)) keep.add(cursor); // aria-activedescendant needs it
    for (const [i, row] of drawn) {
      if (!keep.has(i)) {
        row.remove();
        drawn.delete(i);
      }
    }
    // In display order, so that the DOM reads as the tree does.
    const order = Array.from(keep).sort((a, b) => position[a] - position[b]);
    let next = tree.firstElementChild;
    for (const i of order) {
      let row = drawn.get(i);
      if (!row) {
        row = create(i);
        drawn.set(i, row);
      }
      refresh(row, i);
      if (row === next) next = next.nextElementSibling;
      else tree.insertBefore(row, next);
    }
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(draw);
  }

  function redraw() {
    layout();
    draw();
  }

  // -- State changes ---------------------------------------------------------------------------

  function setCollapsed(i, value) {
    if (!hasChildren(i) || collapsed[i] === (value ? 1 : 0)) return false;
    collapsed[i] = value ? 1 : 0;
    return true;
  }

  function toggle(i, value) {
    if (setCollapsed(i, value)) redraw();
  }

  function all(value) {
    for (let i = 0; i < n; i++) setCollapsed(i, value);
    layout();
    if (cursor >= 0 && !isShown(cursor)) cursor = shownAncestor(cursor);
    draw();
  }

  function shownAncestor(i) {
    while (i >= 0 && !isShown(i)) i = parent[i];
    return i;
  }

  // Open the ancestors of row i; true if any was closed (the caller lays out again).
  function open(i) {
    let changed = false;
    for (let p = parent[i]; p >= 0; p = parent[p]) {
      changed = setCollapsed(p, false) || changed;
    }
    return changed;
  }

  // Scroll the pane so that row i is in view below the sticky toolbar and axis (which take the
  // pane's first tree.offsetTop pixels).
  function scrollTo(i) {
    const sticky = tree.offsetTop;
    const top = sticky + position[i] * ROW;
    if (top < pane.scrollTop + sticky) pane.scrollTop = top - sticky;
    else if (top + ROW > pane.scrollTop + pane.clientHeight) {
      pane.scrollTop = top + ROW - pane.clientHeight;
    }
  }

  function setCursor(i) {
    if (i < 0 || i >= n) return;
    cursor = i;
    scrollTo(i);
    draw();
    tree.setAttribute("aria-activedescendant", "s-" + rows[i][0]);
  }

  function select(i, push) {
    if (i < 0 || i >= n) return;
    if (open(i)) layout();
    selected = i;
    setCursor(i);
    const id = rows[i][0];
    if (push) history.pushState({ span: id }, "", "?span=" + encodeURIComponent(id));
    load(id);
  }

  function load(id) {
    // The view reverses the panel URL with the all-zero span id: the last 16 zeros are it.
    const at = panelUrl.lastIndexOf(ZERO_SPAN_ID);
    const url = panelUrl.slice(0, at) + encodeURIComponent(id) + panelUrl.slice(at + ZERO_SPAN_ID.length);
    wanted = url;
    if (!window.htmx) {
      window.location.assign("?span=" + encodeURIComponent(id));
      return;
    }
    window.htmx.ajax("GET", url, { target: panel, swap: "innerHTML" });
  }

  document.body.addEventListener("htmx:beforeSwap", function (event) {
    const config = event.detail.requestConfig;
    if (event.detail.target === panel && config && config.path !== wanted) {
      event.detail.shouldSwap = false;
    }
  });
  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target === panel) panel.scrollTop = 0;
  });

  window.addEventListener("popstate", function () {
    const id = new URLSearchParams(window.location.search).get("span");
    const i = id ? index.get(id) : 0;
    if (i !== undefined && n) select(i, false);
  });

  // -- Mouse and keyboard ----------------------------------------------------------------------

  function rowOf(target) {
    const row = target.closest(".r");
    return row ? index.get(row.id.slice(2)) : undefined;
  }

  tree.addEventListener("click", function (event) {
    const i = rowOf(event.target);
    if (i === undefined) return;
    if (event.target.closest(".tg")) {
      toggle(i, !collapsed[i]);
      setCursor(i);
      return;
    }
    const link = event.target.closest("a");
    if (link && (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0)) return;
    event.preventDefault();
    select(i, true);
    tree.focus({ preventScroll: true });
  });

  tree.addEventListener("keydown", function (event) {
    if (!n || event.altKey || event.ctrlKey || event.metaKey) return;
    const i = cursor >= 0 ? cursor : 0;
    const place = position[i];
    let target = -1;
    switch (event.key) {
      case "ArrowDown":
        target = visible[Math.min(place + 1, visible.length - 1)];
        break;
      case "ArrowUp":
        target = visible[Math.max(place - 1, 0)];
        break;
      case "PageDown":
        target = visible[Math.min(place + Math.floor(pane.clientHeight / ROW) - 3, visible.length - 1)];
        break;
      case "PageUp":
        target = visible[Math.max(place - Math.floor(pane.clientHeight / ROW) + 3, 0)];
        break;
      case "ArrowRight":
        if (hasChildren(i) && collapsed[i]) toggle(i, false);
        else if (hasChildren(i)) target = i + 1;
        break;
      case "ArrowLeft":
        if (hasChildren(i) && !collapsed[i]) toggle(i, true);
        else if (parent[i] >= 0) target = parent[i];
        break;
      case "Home":
        target = visible[0];
        break;
      case "End":
        target = visible[visible.length - 1];
        break;
      case "Enter":
      case " ":
        select(i, true);
        break;
      default:
        return;
    }
    event.preventDefault();
    if (target >= 0) setCursor(target);
  });

  tree.addEventListener("focus", function () {
    if (cursor < 0 && n) setCursor(selected >= 0 ? selected : 0);
  });

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-tree]");
    if (button) all(button.getAttribute("data-tree") === "collapse");
  });

  // Links to other spans of this trace, in the panel (parent, links).
  panel.addEventListener("click", function (event) {
    const link = event.target.closest("[data-span-link]");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    const i = index.get(link.getAttribute("data-span-link"));
    if (i === undefined) return;
    event.preventDefault();
    select(i, true);
  });

  // -- Filter: highlight matching rows and open their ancestors ------------------------------------

  const filter = document.getElementById("tree-filter");
  const filterCount = document.getElementById("tree-filter-count");
  const lowered = data.strings.map((text) => text.toLowerCase());
  let matches = [];
  let matchAt = -1;
  let timer = 0;

  function runFilter() {
    const query = filter.value.trim().toLowerCase();
    matched.fill(0);
    matches = [];
    matchAt = -1;
    if (query) {
      const strings = lowered.map((text) => text.includes(query));
      const types = data.types.map((text) => text.includes(query));
      for (let i = 0; i < n; i++) {
        const row = rows[i];
        if (strings[row[8]] || strings[row[9]] || types[row[4]] || row[0].includes(query)) {
          matched[i] = 1;
          matches.push(i);
          open(i);
        }
      }
      filterCount.textContent = matches.length === 1 ? "1 match" : matches.length + " matches";
    } else {
      filterCount.textContent = "";
    }
    layout();
    if (matches.length) setCursor(matches[0]);
    else draw();
  }

  if (filter) {
    filter.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(runFilter, 80);
    });
    filter.addEventListener("keydown", function (event) {
      if (event.key !== "Enter") return;
      event.preventDefault();
      clearTimeout(timer);
      if (!matches.length) runFilter();
      if (!matches.length) return;
      matchAt = (matchAt + 1) % matches.length;
      select(matches[matchAt], true);
    });
  }

  // -- The panel's own controls: attribute filter and copy buttons (the panel is swapped in by
  // htmx, so the listeners are delegated) ----------------------------------------------------------

  panel.addEventListener("input", function (event) {
    const input = event.target.closest(".attr-filter");
    if (!input) return;
    const query = input.value.trim().toLowerCase();
    const table = input.parentElement.querySelector(".attr-table");
    if (!table) return;
    for (const row of table.tBodies[0].rows) {
      row.classList.toggle("h", query !== "" && !row.textContent.toLowerCase().includes(query));
    }
  });

  panel.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy-target], [data-copy-value]");
    if (!button) return;
    let from = null;
    if (button.hasAttribute("data-copy-target")) {
      from = document.getElementById(button.getAttribute("data-copy-target"));
    } else {
      const cell = button.closest("tr").querySelector(".value");
      from = cell && (cell.querySelector("pre.full") || cell.querySelector("pre"));
    }
    if (from) window.studio.copy(button, from.textContent);
  });

  // -- Start: replace the server's rows with the virtual list ----------------------------------------

  tree.textContent = "";
  tree.classList.add("virtual");
  const cut = pane.querySelector(".tree-cut");
  if (cut) cut.remove();
  layout();
  pane.addEventListener("scroll", schedule, { passive: true });
  window.addEventListener("resize", schedule);
  if (selected >= 0) {
    cursor = selected;
    const top = tree.offsetTop + position[selected] * ROW;
    if (top > pane.clientHeight) pane.scrollTop = top - pane.clientHeight / 2;
    tree.setAttribute("aria-activedescendant", "s-" + rows[selected][0]);
  }
  draw();
})();
