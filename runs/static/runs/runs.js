// Run pages. No inline scripts: the CSP allows only static/.
(function () {
  "use strict";

  // <select data-autosubmit> filters as soon as a value is picked (the button stays for no-JS).
  document.addEventListener("change", function (event) {
    const select = event.target.closest("select[data-autosubmit]");
    if (select && select.form) select.form.requestSubmit();
  });
})();
