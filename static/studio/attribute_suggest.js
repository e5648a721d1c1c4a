// Value suggestions in the overview's attribute filter: once a key and an operator are typed
// ("gen_ai.request.model = gp"), the field's datalist offers whole clauses with the values that
// key has on the newest spans (/api/attributes/values/), and offers keys again when the operator
// is erased. Without JavaScript the field is a plain text input: a clause typed whole still
// filters, and a bad one is named on the page.
(function () {
  "use strict";

  const DELAY_MS = 150;
  // key, operator, the start of a value: as tracing.clauses reads them.
  const CLAUSE = /^\s*([A-Za-z0-9_.\-/:@]+)\s*(!=|>=|<=|=|>|<|~)\s*(.*)$/;

  // A value that would read differently unquoted (padding, a leading quote) is quoted.
  function literal(value) {
    return /^\s|\s$|^"/.test(value) || value === "" ? '"' + value + '"' : value;
  }

  function attach(input) {
    const list = document.getElementById(input.getAttribute("list"));
    const url = input.getAttribute("data-values-url");
    if (!list || !url) return;
    let keyOptions = null; // the key suggestions, while the list shows values
    let asked = "";
    let timer = 0;

    function showKeys() {
      asked = "";
      if (keyOptions) list.replaceChildren(...keyOptions);
      keyOptions = null;
    }

    async function suggest() {
      const clause = CLAUSE.exec(input.value);
      if (!clause) {
        showKeys();
        return;
      }
      const [, key, op] = clause;
      const prefix = clause[3].replace(/^"/, "");
      const question = key + "\n" + op + "\n" + prefix;
      if (question === asked) return;
      asked = question;
      let found;
      try {
        const query = new URLSearchParams({ key: key, prefix: prefix });
        const response = await fetch(url + "?" + query, {
          headers: { Accept: "application/json" },
        });
        if (!response.ok) return; // a key the server refuses: no suggestions
        found = await response.json();
      } catch (error) {
        return; // suggestions are a convenience; the clause still works typed whole
      }
      if (question !== asked) return; // an answer to an older question
      if (keyOptions === null) keyOptions = Array.from(list.children);
      list.replaceChildren(
        ...found.values.map(function (value) {
          const option = document.createElement("option");
          option.value = key + " " + op + " " + literal(value);
          return option;
        }),
      );
    }

    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(suggest, DELAY_MS);
    });
  }

  document.querySelectorAll("input[data-values-url]").forEach(attach);
})();
