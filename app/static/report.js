/* Keeps an open campaign report current: polls its JSON endpoint and swaps the parts in place. */
(function () {
  "use strict";
  var root = document.querySelector("[data-live-url]");
  if (!root || !window.fetch) return;
  var delay = parseInt(root.getAttribute("data-poll"), 10) * 1000;
  var failures = 0;

  function swap(key, html) {
    var element = root.querySelector('[data-live="' + key + '"]');
    if (!element || element.innerHTML === html) return;
    var before = [];
    element.querySelectorAll("details").forEach(function (d, i) { if (d.open) before.push(i); });
    element.innerHTML = html;
    var details = element.querySelectorAll("details");
    before.forEach(function (i) { if (details[i]) details[i].open = true; });
  }

  function schedule() {
    if (delay > 0) window.setTimeout(tick, delay * Math.min(1 + failures, 6));
  }

  function tick() {
    if (document.hidden) { schedule(); return; }
    fetch(root.getAttribute("data-live-url"), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      cache: "no-store"
    }).then(function (response) {
      if (!response.ok) throw new Error(response.status);
      return response.json();
    }).then(function (data) {
      failures = 0;
      Object.keys(data.html).forEach(function (key) { swap(key, data.html[key]); });
      delay = (data.poll_seconds || 0) * 1000;
      root.setAttribute("data-poll", data.poll_seconds || 0);
    }).catch(function () {
      failures += 1; // back off while the server or the network is away
    }).then(schedule);
  }

  schedule();
})();
