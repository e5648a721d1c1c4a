// The trace overview: filters that swap only the results (htmx), live rows over a websocket,
// row selection, and relative times that keep current. Without JavaScript the same form and links
// work as plain requests. No inline scripts or styles: the CSP allows only static/ files.
(function () {
  "use strict";

  const SEARCH_DELAY_MS = 300;
  const TIME_REFRESH_MS = 30000;
  const MAX_RETRY_MS = 30000;

  const $ = (id) => document.getElementById(id);

  // ---- Filters: every change submits the form (htmx turns that into a swap of #results);
  // typing waits for a pause. The search box never clears the other filters: they are one form.

  let typing = null;
  const typed = (field) => field.name === "q" || field.name === "min_duration";

  document.addEventListener("input", function (event) {
    const form = $("trace-filters");
    if (!form || !form.contains(event.target) || !typed(event.target)) return;
    clearTimeout(typing);
    typing = setTimeout(function () { form.requestSubmit(); }, SEARCH_DELAY_MS);
  });

  document.addEventListener("change", function (event) {
    const field = event.target;
    const form = $("trace-filters");
    if (form && form.contains(field)) {
      if (typed(field)) return; // the input handler has it
      if (field.name === "range" && field.value === "custom") {
        // Wait for the dates; the custom range fields are now shown.
        const since = $("filter-since");
        if (since) since.focus();
        return;
      }
      form.requestSubmit();
      return;
    }
    if (field.id === "select-all") {
      document.querySelectorAll("#trace-rows input[name=trace_id]").forEach(function (box) {
        box.checked = field.checked;
      });
    }
    if (field.closest && field.closest("#trace-table")) updateSelection();
  });

  // After a swap or a history restore, the form shows what the results show (sorting from a
  // column header, Back). The field being typed in is left alone.
  function syncForm() {
    const results = $("results");
    const form = $("trace-filters");
    if (!results || !form) return;
    const params = new URLSearchParams(results.dataset.query || "");
    for (const field of form.elements) {
      if (!field.name || field === document.activeElement) continue;
      const value = params.has(field.name) ? params.get(field.name) : (field.dataset.default || "");
      if (field.value !== value) field.value = value;
    }
  }

  // ---- Rows: a click anywhere on a row opens the trace; the info button toggles its card on
  // touch screens (hover and focus show it everywhere else).

  document.addEventListener("click", function (event) {
    const infoButton = event.target.closest(".info-button");
    if (infoButton) {
      const open = infoButton.getAttribute("aria-expanded") !== "true";
      closeInfoCards();
      infoButton.setAttribute("aria-expanded", String(open));
      infoButton.parentElement.classList.toggle("open", open);
      return;
    }
    if (!event.target.closest(".info")) closeInfoCards();
    const row = event.target.closest("tr.trace-row");
    if (!row || event.target.closest("a, button, input, label, .info, .col-select")) return;
    if (String(window.getSelection ? window.getSelection() : "").length) return; // copying text
    if (event.ctrlKey || event.metaKey || event.shiftKey) {
      window.open(row.dataset.href, "_blank", "noopener");
    } else {
      window.location.assign(row.dataset.href);
    }
  });

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") closeInfoCards();
  });

  function closeInfoCards() {
    document.querySelectorAll(".info.open").forEach(function (info) {
      info.classList.remove("open");
      const button = info.querySelector(".info-button");
      if (button) button.setAttribute("aria-expanded", "false");
    });
  }

  // ---- Selection and deleting.

  function updateSelection() {
    const boxes = Array.from(document.querySelectorAll("#trace-rows input[name=trace_id]"));
    const chosen = boxes.filter(function (box) { return box.checked; }).length;
    const all = $("select-all");
    if (all) {
      all.hidden = boxes.length === 0;
      all.checked = chosen > 0 && chosen === boxes.length;
      all.indeterminate = chosen > 0 && chosen < boxes.length;
    }
    const button = $("delete-selected");
    if (button) button.disabled = chosen === 0;
    const count = $("selection-count");
    if (count) count.textContent = chosen ? chosen + " selected" : "";
  }

  // ---- Times and duration bars.

  function ago(milliseconds) {
    const seconds = Math.floor(milliseconds / 1000);
    if (seconds < 0) return "in the future";
    if (seconds >= 86400) return Math.floor(seconds / 86400) + " d ago";
    if (seconds >= 3600) return Math.floor(seconds / 3600) + " h ago";
    if (seconds >= 60) return Math.floor(seconds / 60) + " min ago";
    return seconds + " s ago";
  }

  function refreshTimes() {
    const now = Date.now();
    document.querySelectorAll("#trace-rows time[datetime]").forEach(function (time) {
      const moment = Date.parse(time.getAttribute("datetime"));
      if (!isNaN(moment)) time.textContent = ago(now - moment);
    });
  }

  function rescaleBars() {
    const rows = Array.from(document.querySelectorAll("#trace-rows tr.trace-row"));
    const durations = rows.map(function (row) { return Number(row.dataset.durationNs) || 0; });
    const longest = Math.max(0, ...durations);
    rows.forEach(function (row, index) {
      const rect = row.querySelector(".bar rect");
      if (rect) {
        const width = longest > 0 ? Math.max(0, (100 * durations[index]) / longest) : 0;
        rect.setAttribute("width", width.toFixed(1));
      }
    });
  }

  // ---- Live updates.

  const live = { socket: null, seq: 0, retries: 0, attempts: 0 };

  function setStatus(state, text) {
    const status = $("live-status");
    if (!status) return;
    status.hidden = false;
    status.dataset.state = state;
    status.textContent = text;
  }

  function connect() {
    const root = document.querySelector(".overview[data-socket]");
    if (!root || !("WebSocket" in window)) return;
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    let socket;
    live.attempts += 1;
    try {
      socket = new WebSocket(scheme + location.host + root.dataset.socket);
    } catch (error) {
      retryLater();
      return;
    }
    live.socket = socket;
    socket.addEventListener("open", function () {
      live.retries = 0;
      setStatus("live", "Live");
      if (live.attempts > 1) {
        catchUp(); // whatever happened while there was no socket; subscribes after the swap
      } else {
        subscribe();
      }
    });
    socket.addEventListener("message", function (event) {
      let message;
      try { message = JSON.parse(event.data); } catch (error) { return; }
      if (message.type === "update" && message.seq === live.seq) applyUpdate(message);
    });
    socket.addEventListener("close", function () {
      if (live.socket !== socket) return;
      live.socket = null;
      retryLater();
    });
  }

  // Backoff with jitter, so a restarted Studio is not met by every open page at once.
  function retryLater() {
    setStatus("reconnecting", "Reconnecting…");
    const delay = Math.min(MAX_RETRY_MS, 500 * Math.pow(2, live.retries++));
    setTimeout(connect, delay * (0.75 + Math.random() / 2));
  }

  function send(message) {
    if (live.socket && live.socket.readyState === WebSocket.OPEN) {
      live.socket.send(JSON.stringify(message));
    }
  }

  function shownIds() {
    return Array.from(document.querySelectorAll("#trace-rows tr.trace-row"), function (row) {
      return row.dataset.traceId;
    });
  }

  function subscribe() {
    const results = $("results");
    if (!results) return;
    live.seq += 1;
    send({
      type: "subscribe",
      seq: live.seq,
      query: results.dataset.query || "",
      top: results.dataset.liveTop === "1",
      newest_ns: results.dataset.newestNs || "",
      shown: shownIds(),
    });
  }

  function catchUp() {
    if (!$("results") || !window.htmx) return;
    window.htmx.ajax("GET", location.pathname + location.search, {
      target: "#results",
      swap: "outerHTML",
      headers: { "X-Studio-Refresh": "1" },
    });
  }

  function parseRow(html) {
    // Server-rendered by the page's own partial (autoescaped): never built from span data here.
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    const row = template.content.firstElementChild;
    return row && row.matches("tr.trace-row") ? row : null;
  }

  // Newest first, ties by trace id, as the server orders them.
  function isAfter(row, startNs, traceId) {
    const start = BigInt(row.dataset.startNs);
    return start < startNs || (start === startNs && row.dataset.traceId < traceId);
  }

  function insertSorted(tbody, fresh, pageSize) {
    const startNs = BigInt(fresh.dataset.startNs);
    const rows = tbody.querySelectorAll("tr.trace-row");
    for (const row of rows) {
      if (isAfter(row, startNs, fresh.dataset.traceId)) {
        tbody.insertBefore(fresh, row);
        return true;
      }
    }
    if (rows.length < pageSize) {
      tbody.appendChild(fresh);
      return true;
    }
    return false; // older than the whole page: it belongs to a later one
  }

  function pointOlderLinkAt(lastRow) {
    const pager = document.querySelector("#results .pager");
    if (!pager || !lastRow) return;
    let link = $("older-link");
    if (!link) {
      link = document.createElement("a");
      link.id = "older-link";
      link.rel = "next";
      link.textContent = "Older →";
      pager.appendChild(link);
    }
    const url = new URL($("results").dataset.firstUrl || location.pathname, location.href);
    url.searchParams.delete("before");
    url.searchParams.set("after", lastRow.dataset.startNs + "_" + lastRow.dataset.traceId);
    const target = url.pathname + url.search;
    link.setAttribute("href", target);
    link.setAttribute("hx-get", target);
    if (window.htmx) window.htmx.process(link);
  }

  function applyUpdate(message) {
    const results = $("results");
    if (!results) return;
    if (results.dataset.empty === "1") {
      if (message.rows && message.rows.length) catchUp(); // the first trace: show the table
      return;
    }
    const tbody = $("trace-rows");
    if (!tbody) return;
    const top = results.dataset.liveTop === "1";
    const pageSize = Number(results.dataset.pageSize) || 50;
    let changed = false;
    (message.gone || []).forEach(function (id) {
      const row = $("trace-" + id);
      if (row) { row.remove(); changed = true; }
    });
    (message.rows || []).forEach(function (item) {
      const fresh = parseRow(item.html);
      if (!fresh) return;
      const existing = $("trace-" + item.id);
      if (existing) {
        // A summary changes only when spans are added, so the span count versions a row.
        if (existing.dataset.version === fresh.dataset.version) return;
        const box = existing.querySelector("input[name=trace_id]");
        const freshBox = fresh.querySelector("input[name=trace_id]");
        if (box && freshBox) freshBox.checked = box.checked;
        if (existing.contains(document.activeElement)) return; // don't pull focus away
        existing.replaceWith(fresh);
        changed = true;
      } else if (top && insertSorted(tbody, fresh, pageSize)) {
        fresh.classList.add("is-new");
        changed = true;
      }
    });
    if (top) {
      const rows = tbody.querySelectorAll("tr.trace-row");
      if (rows.length > pageSize) {
        for (let i = pageSize; i < rows.length; i++) rows[i].remove();
        pointOlderLinkAt(rows[pageSize - 1]);
      }
    }
    if (typeof message.new_count === "number") {
      const notice = $("new-traces");
      if (notice) {
        notice.hidden = message.new_count === 0;
        notice.textContent = message.new_count === 1 ? "1 new trace" : message.new_count + " new traces";
      }
    }
    if (message.cards) {
      const cards = $("cards");
      const template = document.createElement("template");
      template.innerHTML = message.cards.trim();
      if (cards && template.content.firstElementChild) cards.replaceWith(template.content.firstElementChild);
    }
    if (changed) {
      const placeholder = tbody.querySelector("tr.no-rows");
      if (placeholder && tbody.querySelector("tr.trace-row")) placeholder.remove();
      rescaleBars();
      refreshTimes();
      updateSelection();
      if (top) send({ type: "shown", ids: shownIds() });
    }
  }

  // ---- Wiring.

  function pageChanged() {
    syncForm();
    updateSelection();
    refreshTimes();
    subscribe();
  }

  document.addEventListener("htmx:afterSettle", function (event) {
    // Fired on the new #results; `target` is the element it replaced.
    if (event.target.id === "results") pageChanged();
  });
  document.addEventListener("htmx:historyRestore", pageChanged);

  function start() {
    if (!$("results")) return;
    updateSelection();
    setInterval(refreshTimes, TIME_REFRESH_MS);
    connect();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
