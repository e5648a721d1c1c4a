// Small behaviours shared by every page. No inline scripts: the CSP allows only static/.
(function () {
  "use strict";

  // Every page shows exact times in the reader's zone once the server knows it (studio.js runs
  // on every page, so a trace opened from a link learns it as well as the overview).
  try {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    // As is, not percent-encoded: Django does not decode cookies, and IANA names ("Asia/Tokyo")
    // are valid cookie values.
    if (zone && /^[A-Za-z0-9_+\-\/]+$/.test(zone) && !document.cookie.split("; ").includes("tz=" + zone)) {
      document.cookie = "tz=" + zone + "; path=/; max-age=31536000; samesite=lax";
    }
  } catch (error) { /* no Intl: times stay in UTC, and say so */ }

  // Copies text to the clipboard and says so on the button for a moment. Exposed for the
  // pages' own copy buttons (trace.js); deferred scripts run in order, so this one comes first.
  function copy(button, text) {
    const done = function () {
      const before = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = before; }, 1200);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {});
      return;
    }
    const area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); done(); } catch (e) { /* nothing to do */ }
    area.remove();
  }
  window.studio = { copy: copy };

  // Copy buttons: <button data-copy="text">.
  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    event.preventDefault();
    copy(button, button.getAttribute("data-copy"));
  });
})();
