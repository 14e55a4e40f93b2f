/* The send panel: confirm before acting, and follow a running campaign every second. */
(function () {
  "use strict";
  if (window.rallypointSendPanel) return; // included once per page, even if the panel is twice
  window.rallypointSendPanel = true;

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  function start() {
    var panel = document.getElementById("send-panel");
    if (!panel) return;
    var status = panel.getAttribute("data-status");
    if (status !== "sending" && status !== "paused") return;
    var url = panel.getAttribute("data-progress-url");
    var number = new Intl.NumberFormat("en-CA");

    function set(name, text) {
      panel.querySelectorAll('[data-field="' + name + '"]').forEach(function (el) {
        el.textContent = text;
      });
    }

    function pace(p) {
      if (!p.rate_per_minute) return "Starting…";
      var text = number.format(Math.round(p.rate_per_minute)) + " a minute";
      if (p.seconds_left !== null) {
        var minutes = Math.ceil(p.seconds_left / 60);
        text += minutes <= 1 ? " · less than a minute left" : " · about " + minutes + " min left";
      }
      return text;
    }

    function update(p) {
      set("sent", number.format(p.sent));
      set("total", number.format(p.total));
      set("percent", String(p.percent));
      set("waiting", number.format(p.queued + p.sending));
      set("failed", number.format(p.failed));
      set("skipped", number.format(p.skipped));
      set("unknown", number.format(p.unknown));
      set("pace", pace(p));
      var bar = panel.querySelector("[data-bar]");
      if (bar) bar.style.width = p.percent + "%";
      var meter = panel.querySelector('[role="progressbar"]');
      if (meter) meter.setAttribute("aria-valuenow", String(p.percent));
    }

    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (p) {
          if (p && p.status !== status) {
            window.location.reload(); // finished, paused or resumed: show the new buttons
            return;
          }
          if (p) update(p);
          window.setTimeout(poll, status === "sending" ? 1000 : 4000);
        })
        .catch(function () { window.setTimeout(poll, 3000); });
    }
    window.setTimeout(poll, 1000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
