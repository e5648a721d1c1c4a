// The trace overview: filters that swap only the results (htmx), live rows over a websocket (htmx),
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

  // ---- Selection: deleting, and comparing two.

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
    const compare = $("compare-selected");
    if (compare) compare.disabled = chosen !== 2;
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

  // ---- Live updates: htmx's ws extension holds the socket (`ws-connect` on .overview), sends
  // each rendering's #live-subscription form, and swaps in the rows, cards and pager the server
  // renders (studio.consumers). This file only says whether the page is live, reconnects where
  // the extension would not, and keeps a replaced row's checkbox and focus.

  let opened = 0;
  let retries = 0;

  function setStatus(state, text) {
    const status = $("live-status");
    if (!status) return;
    status.hidden = false;
    status.dataset.state = state;
    status.textContent = text;
  }

  if (window.htmx) {
    // Backoff with jitter, so a restarted Studio is not met by every open page at once.
    window.htmx.config.wsReconnectDelay = function (retry) {
      return Math.min(MAX_RETRY_MS, 500 * Math.pow(2, retry)) * (0.75 + Math.random() / 2);
    };
  }

  document.addEventListener("htmx:wsOpen", function () {
    retries = 0;
    setStatus("live", "Live");
    opened += 1;
    if (opened > 1) catchUp(); // whatever happened while there was no socket
  });

  document.addEventListener("htmx:wsClose", function (event) {
    const root = event.target;
    if (!document.body.contains(root)) return; // the page is going
    setStatus("reconnecting", "Reconnecting…");
    // The extension retries only after abnormal closes (1006, 1011-1013); a server going away
    // (1001) or a proxy closing the socket cleanly would otherwise leave the page dead.
    if ([1006, 1011, 1012, 1013].includes(event.detail.event.code)) return;
    const socket = event.detail.socketWrapper;
    setTimeout(function () { socket.reconnect(); }, window.htmx.config.wsReconnectDelay(retries++));
  });

  function catchUp() {
    if (!$("results") || !window.htmx) return;
    // The same view again (the header keeps it out of history); its form subscribes anew.
    window.htmx.ajax("GET", location.pathname + location.search, {
      target: "#results",
      swap: "outerHTML",
      headers: { "X-Studio-Refresh": "1" },
    });
  }

  // A row the server replaces keeps what the reader did to it: its checkbox, and the focus.
  const FOCUSABLE = "a, button, input";
  let refocus = null;

  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    const old = event.detail.target;
    if (!old.matches || !old.matches("tr.trace-row")) return;
    const box = old.querySelector("input[name=trace_id]");
    const fresh = event.detail.fragment.querySelector("input[name=trace_id]");
    if (box && fresh) fresh.checked = box.checked;
    if (old.contains(document.activeElement)) {
      const index = Array.from(old.querySelectorAll(FOCUSABLE)).indexOf(document.activeElement);
      refocus = { id: old.id, index: index };
    }
  });

  document.addEventListener("htmx:wsAfterMessage", function () {
    if (refocus) {
      const row = $(refocus.id);
      const target = row && row.querySelectorAll(FOCUSABLE)[refocus.index];
      if (target) target.focus({ preventScroll: true });
      refocus = null;
    }
    rescaleBars();
    refreshTimes();
    updateSelection();
  });

  // ---- Wiring.

  function pageChanged() {
    syncForm();
    updateSelection();
    refreshTimes();
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
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
