// The trace page: the call tree (expand and collapse, filter, keyboard) and the span panel.
//
// The server sends every row as compact JSON (#tree-data), the first rows as HTML, for reading
// without JavaScript, and a blank row (#tree-row) to clone for the rest. This file replaces those
// with a virtual list: only the rows in view exist in the DOM, so a trace of 50,000 spans
// scrolls, opens and filters as fast as one of 50. A trace too big to put in the page has no
// #tree-data: its rows are fetched from #tree's data-tree-url as lines of JSON, a chunk at a
// time, and drawn as they arrive. Rows are in depth-first order with their depth, so a span's
// descendants are the rows after it that are deeper; everything below is a scan over typed
// arrays. Span text only ever reaches the DOM through textContent and attribute setters, never
// as HTML.
(function () {
  "use strict";

  const tree = document.getElementById("tree");
  const source = document.getElementById("tree-data");
  const treeUrl = tree && tree.getAttribute("data-tree-url");
  if (!tree || !(source || treeUrl)) return;
  const pane = tree.closest(".tree-pane");
  const panel = document.getElementById("span-panel");
  const panelUrl = tree.getAttribute("data-panel-url");
  const chosen = tree.getAttribute("data-selected");
  const ZERO_SPAN_ID = "0000000000000000";
  const ROW = 24; // px, as .tree.virtual .r in trace.css
  const OVERSCAN = 20;
  const ERROR = 1;
  const ORPHAN = 2;

  // Rows as the server sends them, their type and string indices mapped to these shared tables
  // (each streamed chunk has tables of its own).
  const rows = [];
  const types = [];
  const strings = [];
  const typeAt = new Map();
  const stringAt = new Map();
  let maxIndent = 0;
  let n = 0; // rows arrived so far
  let depth = new Int32Array(0);
  let parent = new Int32Array(0);
  let end = new Int32Array(0); // one past the last row of the subtree
  let collapsed = new Uint8Array(0);
  let matched = new Uint8Array(0);
  let kept = new Uint8Array(0); // the error rows and their ancestors: what "Errors only" shows
  let onPath = new Uint8Array(0); // the rows on the critical path
  let position = new Int32Array(0); // row index -> place in `visible`, -1 when hidden
  const index = new Map();
  let visible = new Int32Array(0); // row indices in display order
  const open_ = []; // rows whose subtree may still grow (the last row's ancestors)
  let selected = -1;
  let cursor = -1;
  let wanted = ""; // the panel URL asked for last: older answers are not swapped in
  let loading = 0;
  const KEY_DELAY_MS = 120;

  // Room for `count` rows in all.
  function allocate(count, indent) {
    maxIndent = indent;
    depth = new Int32Array(count);
    parent = new Int32Array(count);
    end = new Int32Array(count);
    collapsed = new Uint8Array(count);
    matched = new Uint8Array(count);
    kept = new Uint8Array(count);
    onPath = new Uint8Array(count);
    position = new Int32Array(count);
  }

  function shared(table, at, value) {
    let i = at.get(value);
    if (i === undefined) {
      i = table.length;
      table.push(value);
      at.set(value, i);
    }
    return i;
  }

  // Add a chunk of rows ({types, strings, rows}); `last`: no more will come.
  function append(chunk, last) {
    const typeMap = chunk.types.map((text) => shared(types, typeAt, text));
    const stringMap = chunk.strings.map((text) => shared(strings, stringAt, text));
    const identity = typeMap.every((v, i) => v === i) && stringMap.every((v, i) => v === i);
    const from = n;
    for (const row of chunk.rows) {
      if (n >= depth.length) break; // more rows than announced: the trace grew meanwhile
      if (!identity) {
        row[2] = typeMap[row[2]];
        for (let k = 4; k < 8; k++) row[k] = stringMap[row[k]];
      }
      const i = n++;
      rows.push(row);
      const d = row[1];
      depth[i] = d;
      while (open_.length > d) end[open_.pop()] = i;
      parent[i] = open_.length ? open_[open_.length - 1] : -1;
      open_.push(i);
      index.set(row[0], i);
      if (row[0] === chosen) selected = i;
      if (row[3] & ERROR) {
        for (let p = i; p >= 0 && !kept[p]; p = parent[p]) kept[p] = 1;
      }
    }
    // Until their subtrees are complete, the open rows end at the last row so far.
    for (const i of open_) end[i] = n;
    if (last) open_.length = 0;
    // Finder matches and errors that were known before their rows arrived.
    for (let i = from; i < n; i++) {
      if (criticalSet.has(rows[i][0])) onPath[i] = 1;
      if (matchSet.has(rows[i][0])) {
        matched[i] = 1;
        open(i);
      } else if (errorsOnly && rows[i][3] & ERROR) open(i);
    }
  }

  const hasChildren = (i) => end[i] > i + 1;
  const isShown = (i) => position[i] >= 0;

  function layout() {
    const list = new Int32Array(n);
    let count = 0;
    let hideDepth = Infinity;
    for (let i = 0; i < n; i++) {
      const d = depth[i];
      if (d <= hideDepth) hideDepth = Infinity;
      if (d > hideDepth || (errorsOnly && !kept[i]) || (criticalOnly && criticalSet.size && !onPath[i])) {
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

  // Every row is a clone of the server's blank row (studio/trace_page.py), its texts formatted
  // by the server too: this file has no copy of the row's markup or of the duration format.
  const blank = document.getElementById("tree-row").content.firstElementChild;

  function create(i) {
    const [id, d, type, flags, name, label, duration, tokens, x, width] = rows[i];
    const kind = types[type];
    const row = blank.cloneNode(true);
    row.classList.replace("d0", "d" + Math.min(d, maxIndent));
    row.classList.replace("k-" + blank.querySelector(".badge").textContent, "k-" + kind);
    row.id = "s-" + id;
    row.setAttribute("aria-level", String(d + 1));
    if (!hasChildren(i)) {
      row.removeAttribute("aria-expanded");
      row.querySelector(".tg").remove();
    }
    const link = row.querySelector(".n a");
    link.href = "?span=" + encodeURIComponent(id);
    link.title = strings[name];
    const badge = link.querySelector(".badge");
    badge.className = "badge badge-" + kind;
    badge.textContent = kind;
    link.lastChild.data = " " + strings[label];
    if (!(flags & ORPHAN)) {
      row.classList.remove("o");
      row.querySelector(".orphan").remove();
    }
    if (!(flags & ERROR)) {
      row.classList.remove("e");
      row.querySelector(".err").remove();
    }
    row.querySelector(".du").textContent = strings[duration];
    row.querySelector(".tk").textContent = strings[tokens];
    const rect = row.querySelector(".bar rect");
    rect.setAttribute("x", x.toFixed(2) + "%");
    rect.setAttribute("width", width.toFixed(2) + "%");
    return row;
  }

  function refresh(row, i) {
    row.style.top = position[i] * ROW + "px";
    if (hasChildren(i)) row.setAttribute("aria-expanded", collapsed[i] ? "false" : "true");
    if (i === selected) row.setAttribute("aria-selected", "true");
    else row.removeAttribute("aria-selected");
    row.classList.toggle("m", matched[i] === 1);
    row.classList.toggle("cp", onPath[i] === 1);
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
    if (!tree.offsetParent) return; // the tree is not shown (the flame graph is)
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

  // `history`: "push" (a click, Enter), "replace" (the arrow keys: walking the tree must not
  // fill Back with every row passed) or "" (Back itself).
  function select(i, history, delay) {
    if (i < 0 || i >= n) return;
    const hidden = errorsOnly && !kept[i];
    if (hidden) markErrorsOnly(false); // a span "Errors only" hides was asked for: show all
    const offPath = criticalOnly && criticalSet.size > 0 && !onPath[i];
    if (offPath) markCriticalOnly(false); // the same for "Critical path only"
    if (open(i) || hidden || offPath) layout();
    selected = i;
    setCursor(i);
    const id = rows[i][0];
    document.dispatchEvent(new CustomEvent("studio:selected", { detail: { id: id } }));
    const url = "?span=" + encodeURIComponent(id);
    if (history === "push") window.history.pushState({ span: id }, "", url);
    else if (history === "replace") window.history.replaceState({ span: id }, "", url);
    clearTimeout(loading);
    // A held arrow key passes many rows: only the one it stops on is fetched.
    if (delay) loading = setTimeout(load, delay, id);
    else load(id);
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
    if (i !== undefined && n) select(i, "");
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
    select(i, "push");
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
        select(i, "push");
        break;
      default:
        return;
    }
    event.preventDefault();
    // As in Jaeger or devtools, the row the keys move to is opened in the panel.
    if (target >= 0 && target !== selected) select(target, "replace", KEY_DELAY_MS);
    else if (target >= 0) setCursor(target);
  });

  tree.addEventListener("focus", function () {
    if (cursor < 0 && n) setCursor(selected >= 0 ? selected : 0);
  });

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-tree]");
    if (button) all(button.getAttribute("data-tree") === "collapse");
  });

  // Links to other spans of this trace: in the panel (parent, links) and the header's error count.
  document.addEventListener("click", function (event) {
    const link = event.target.closest("[data-span-link]");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    const id = link.getAttribute("data-span-link");
    // A span not in the tree is left to the link, unless its row may still arrive.
    if (!index.has(id) && !streaming) return;
    event.preventDefault();
    goTo(id, "push");
  });

  // Select the span `id`, now or, in a big trace still arriving, when its row does.
  function goTo(id, history) {
    const i = index.get(id);
    waiting = i === undefined ? { id: id, history: history } : null;
    if (i !== undefined) select(i, history);
  }

  function arrived() {
    if (waiting && index.has(waiting.id)) goTo(waiting.id, waiting.history);
    // All rows are in and it is not among them (the trace grew since): the server shows it.
    else if (waiting && !streaming) window.location.assign("?span=" + encodeURIComponent(waiting.id));
  }

  // -- The span finder: the server matches (studio.views.trace_find: names, ids, kinds, models,
  // status messages, attribute values, message text); the tree marks the matches, opens the way
  // to each and steps through them. Matches are span ids in call-tree order: in a big trace still
  // arriving, a match without a row yet is marked when it comes, and going to it waits for it.

  const finder = document.getElementById("tree-filter");
  const finderCount = document.getElementById("tree-filter-count");
  const previousButton = document.getElementById("find-prev");
  const nextButton = document.getElementById("find-next");
  const errorsButton = document.getElementById("errors-only");
  const findUrl = tree.getAttribute("data-find-url");
  const FIND_DELAY_MS = 200;
  let streaming = !source;
  let waiting = null; // {id, history}: the span to select when its row arrives
  let matches = [];
  let matchSet = new Set();
  let matchAt = -1;
  let asked = ""; // the query whose matches are shown (or on their way)
  let answer = null; // the promise of its answer
  let timer = 0;
  let errors = null; // the ids of the error spans in call-tree order, once the server said
  let errorsOnly = false;

  async function ask(q) {
    const response = await fetch(findUrl + "?q=" + encodeURIComponent(q), {
      headers: { Accept: "application/json" },
    });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const found = await response.json();
    errors = found.errors;
    return found;
  }

  function showCount() {
    const m = matches.length;
    if (!asked) finderCount.textContent = "";
    else if (!m) finderCount.textContent = "No matches";
    else finderCount.textContent = Math.max(matchAt + 1, 0) + " of " + m;
    previousButton.disabled = nextButton.disabled = m === 0;
  }

  function mark(ids) {
    matched.fill(0);
    matches = ids;
    matchSet = new Set(ids);
    matchAt = -1;
    for (const id of ids) {
      const i = index.get(id);
      if (i === undefined) continue;
      matched[i] = 1;
      open(i);
    }
    layout();
    draw();
  }

  // Ask the server for the finder's query now and go to its first match. The answer to a query
  // older than the one in the box is dropped.
  function find() {
    clearTimeout(timer);
    const q = finder.value.trim();
    if (q === asked && answer) return answer;
    asked = q;
    if (!q) {
      mark([]);
      showCount();
      answer = Promise.resolve();
      return answer;
    }
    finderCount.textContent = "Finding…";
    answer = ask(q).then(
      function (found) {
        if (q !== asked) return;
        mark(found.matches);
        if (matches.length) step(1, "replace");
        else showCount();
      },
      function (error) {
        if (q !== asked) return;
        answer = null;
        finderCount.textContent = "Search failed (" + error.message + ")";
      }
    );
    return answer;
  }

  // To the next (1) or previous (-1) match, round.
  function step(delta, history) {
    const m = matches.length;
    if (!m) return;
    matchAt = matchAt < 0 ? (delta > 0 ? 0 : m - 1) : (matchAt + delta + m) % m;
    showCount();
    goTo(matches[matchAt], history);
  }

  // Enter and the buttons: a query not asked yet is asked (landing on its first match), else
  // they step.
  function findOrStep(delta) {
    const fresh = finder.value.trim() !== asked || !answer;
    find().then(function () {
      if (!fresh) step(delta, "push");
    });
  }

  if (finder) {
    finder.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(find, FIND_DELAY_MS);
    });
    finder.addEventListener("keydown", function (event) {
      if (event.key !== "Enter") return;
      event.preventDefault();
      findOrStep(event.shiftKey ? -1 : 1);
    });
    previousButton.addEventListener("click", () => findOrStep(-1));
    nextButton.addEventListener("click", () => findOrStep(1));
  }

  // -- Errors: "Errors only" shows just the error spans and their ancestors; n and p go to the
  // next and previous error span after the cursor (round), with or without it ---------------------

  function markErrorsOnly(on) {
    errorsOnly = on;
    if (errorsButton) errorsButton.setAttribute("aria-pressed", on ? "true" : "false");
  }

  if (errorsButton) {
    errorsButton.addEventListener("click", function () {
      markErrorsOnly(!errorsOnly);
      if (errorsOnly) {
        for (let i = 0; i < n; i++) if (rows[i][3] & ERROR) open(i);
      }
      layout();
      if (cursor >= 0 && !isShown(cursor)) cursor = shownAncestor(cursor);
      if (selected >= 0 && isShown(selected)) scrollTo(selected);
      draw();
    });
  }

  async function jumpToError(delta) {
    const list = errors || (await ask("")).errors;
    if (!list.length) return;
    const here = cursor >= 0 ? cursor : selected;
    // The rows of a big trace arrive in call-tree order: one not here yet comes after them all.
    const at = (id) => (index.has(id) ? index.get(id) : Infinity);
    let target;
    if (delta > 0) target = list.find((id) => at(id) > here);
    else target = list.findLast((id) => at(id) < here);
    if (target === undefined) target = delta > 0 ? list[0] : list[list.length - 1];
    goTo(target, "push");
  }

  document.addEventListener("keydown", function (event) {
    if (event.key !== "n" && event.key !== "p") return;
    if (event.altKey || event.ctrlKey || event.metaKey || event.defaultPrevented) return;
    const target = event.target;
    if (target.isContentEditable || target.closest("input, textarea, select")) return;
    event.preventDefault();
    jumpToError(event.key === "n" ? 1 : -1);
  });

  // -- The critical path (studio.trace_page.time_split: the span ids in #critical-path, in the
  // page or, for a big trace, in the fragment loaded after it): its rows are marked, and
  // "Critical path only" shows just them (without JavaScript the link asks the server for a page
  // listing only them: ?critical=1) -------------------------------------------------------------

  const criticalButton = document.getElementById("critical-only");
  let criticalSet = new Set();
  let criticalOnly = !!criticalButton && criticalButton.getAttribute("aria-pressed") === "true";

  function markCriticalOnly(on) {
    criticalOnly = on;
    if (criticalButton) criticalButton.setAttribute("aria-pressed", on ? "true" : "false");
  }

  function openCriticalPath() {
    for (let i = 0; i < n; i++) if (onPath[i]) open(i);
  }

  function readCriticalPath() {
    const script = document.getElementById("critical-path");
    if (!script) return;
    criticalSet = new Set(JSON.parse(script.textContent));
    for (let i = 0; i < n; i++) onPath[i] = criticalSet.has(rows[i][0]) ? 1 : 0;
    if (criticalOnly) openCriticalPath();
    if (tree.classList.contains("virtual")) redraw();
  }

  if (criticalButton) {
    criticalButton.addEventListener("click", function (event) {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      markCriticalOnly(!criticalOnly);
      const url = new URL(window.location.href);
      if (criticalOnly) url.searchParams.set("critical", "1");
      else url.searchParams.delete("critical");
      criticalButton.setAttribute("href", criticalOnly ? "?" : "?critical=1");
      window.history.replaceState(window.history.state, "", url);
      if (criticalOnly) openCriticalPath();
      layout();
      if (cursor >= 0 && !isShown(cursor)) cursor = shownAncestor(cursor);
      if (selected >= 0 && isShown(selected)) scrollTo(selected);
      draw();
    });
  }

  document.body.addEventListener("htmx:afterSwap", function () {
    if (document.getElementById("critical-path") && !criticalSet.size) readCriticalPath();
  });

  // The flame graph (flame.js) selects spans through the tree, and hands the pane back to it.
  document.addEventListener("studio:goto", function (event) {
    goTo(event.detail.id, "push");
  });
  document.addEventListener("studio:treeshown", function () {
    if (selected >= 0 && isShown(selected)) scrollTo(selected);
    schedule();
  });

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

  // -- Start: replace the server's rows with the virtual list, and fetch the rows of a big trace -----

  function showSelected() {
    cursor = selected;
    const top = tree.offsetTop + position[selected] * ROW;
    if (top > pane.clientHeight) pane.scrollTop = top - pane.clientHeight / 2;
    tree.setAttribute("aria-activedescendant", "s-" + rows[selected][0]);
  }

  function start() {
    tree.textContent = "";
    tree.classList.add("virtual");
    const cut = pane.querySelector(".tree-cut");
    if (cut && treeUrl) cut.hidden = true; // kept for an error while the rows arrive
    else if (cut) cut.remove();
    layout();
    pane.addEventListener("scroll", schedule, { passive: true });
    window.addEventListener("resize", schedule);
    if (selected >= 0) showSelected();
    draw();
  }

  // A chunk changes rows already drawn (a row may get its first children): draw them anew.
  function grown(hadSelected) {
    for (const row of drawn.values()) row.remove();
    drawn.clear();
    layout();
    if (!hadSelected && selected >= 0) showSelected();
    draw();
  }

  async function stream() {
    tree.setAttribute("aria-busy", "true");
    const response = await fetch(treeUrl, { headers: { Accept: "application/x-ndjson" } });
    if (!response.ok || !response.body) throw new Error("tree data: HTTP " + response.status);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let started = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (value) buffer += value;
      const lines = buffer.split("\n");
      buffer = done ? "" : lines.pop();
      for (const line of lines) {
        if (!line) continue;
        const chunk = JSON.parse(line);
        if (chunk.count !== undefined) {
          allocate(chunk.count, chunk.max_indent);
          continue;
        }
        const hadSelected = selected >= 0;
        append(chunk, false);
        if (!started) {
          started = true;
          start();
        } else grown(hadSelected);
        arrived();
      }
      if (done) break;
    }
    append({ types: [], strings: [], rows: [] }, true);
    if (!started) start();
    else grown(true);
    streaming = false;
    arrived();
    tree.removeAttribute("aria-busy");
  }

  readCriticalPath();
  if (source) {
    const data = JSON.parse(source.textContent);
    allocate(data.rows.length, data.max_indent);
    append(data, true);
    start();
  } else {
    stream().catch(function (error) {
      streaming = false;
      tree.removeAttribute("aria-busy");
      const note = pane.querySelector(".tree-cut");
      note.hidden = false;
      note.textContent = "Not every span could be loaded (" + error.message + "): reload the page.";
    });
  }
})();
