// riskstream analyst console: keyboard shortcuts and the live open-case count. No library, no build.
(function () {
  "use strict";

  function typing(event) {
    var t = event.target;
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
  }

  // --- the queue: j/k move the selection, Enter opens it; the open count refreshes every 5 s -------------
  function setupQueue() {
    var rows = Array.prototype.slice.call(document.querySelectorAll("#queue tbody tr[data-href]"));
    var selected = rows.length ? 0 : -1;
    function select(i) {
      if (!rows.length) return;
      if (selected >= 0) rows[selected].classList.remove("selected");
      selected = Math.max(0, Math.min(rows.length - 1, i));
      rows[selected].classList.add("selected");
      rows[selected].scrollIntoView({ block: "nearest" });
    }
    if (rows.length) select(0);
    rows.forEach(function (row, i) {
      row.addEventListener("click", function (e) {
        if (e.target.tagName !== "A") window.location.href = row.dataset.href;
      });
    });
    return {
      j: function () { select(selected + 1); },
      k: function () { select(selected - 1); },
      Enter: function () { if (selected >= 0) window.location.href = rows[selected].dataset.href; },
    };
  }

  function pollCount() {
    var el = document.getElementById("open-count");
    var status = document.getElementById("open-count-status");
    if (!el) return;
    function refresh() {
      fetch(el.dataset.poll, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          if (r.redirected || !r.ok) throw new Error(r.redirected ? "signed out" : "HTTP " + r.status);
          return r.json();
        })
        .then(function (body) {
          el.textContent = String(body.open);
          status.textContent = "(live, " + new Date().toLocaleTimeString() + ")";
        })
        .catch(function (err) { status.textContent = "(not refreshed: " + err.message + ")"; });
    }
    window.setInterval(refresh, 5000);
  }

  // --- a case: c claims, f / l resolve, j / k go to the next / previous unresolved case ---------------------
  function setupCase() {
    var heading = document.getElementById("case");
    function go(url) { if (url) window.location.href = url; }
    function press(id) {
      var button = document.getElementById(id);
      if (button && !button.disabled) { button.disabled = false; button.form.requestSubmit(button); }
    }
    return {
      c: function () { press("claim"); },
      f: function () { press("resolve-fraud"); },
      l: function () { press("resolve-legitimate"); },
      j: function () { go(heading.dataset.next); },
      k: function () { go(heading.dataset.prev); },
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.body.dataset.page;
    var keys = { q: function () { window.location.href = "/console/queue"; },
                 o: function () { window.location.href = "/console/overview"; },
                 d: function () { window.location.href = "/console/drift"; } };
    var own = page === "queue" ? setupQueue() : page === "case" ? setupCase() : {};
    Object.keys(own).forEach(function (k) { keys[k] = own[k]; });
    if (page === "queue") pollCount();
    if (page === "login") return;
    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey || typing(event)) return;
      var action = keys[event.key];
      if (action) { event.preventDefault(); action(); }
    });
  });
})();
