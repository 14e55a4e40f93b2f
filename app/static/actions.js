// The hosted action page works without this: it only copies the share link and refreshes the count.
(function () {
  // A tracked click's reference (?r=) pre-fills this page for two hours: keep it in the form,
  // not in the address bar, so a link copied from there does not greet someone else.
  if (window.history && window.URLSearchParams && location.search.indexOf("r=") !== -1) {
    var params = new URLSearchParams(location.search);
    if (params.has("r")) {
      params.delete("r");
      params.delete("notme");
      var query = params.toString();
      history.replaceState(null, "", location.pathname + (query ? "?" + query : "") + location.hash);
    }
  }
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var input = document.querySelector(button.getAttribute("data-copy"));
      if (!input) return;
      input.select();
      var done = function () { button.textContent = button.getAttribute("data-copied"); };
      if (navigator.clipboard) { navigator.clipboard.writeText(input.value).then(done, done); }
      else { document.execCommand("copy"); done(); }
    });
  });
  var box = document.querySelector("[data-count-url]");
  if (!box || !window.fetch) return;
  var refresh = function () {
    fetch(box.getAttribute("data-count-url")).then(function (r) { return r.json(); }).then(function (data) {
      var n = box.querySelector("[data-count]");
      if (n) n.textContent = Number(data.count).toLocaleString();
      var bar = box.querySelector(".progress > span");
      if (bar && data.goal) bar.style.width = Math.min(100, Math.round(100 * data.count / data.goal)) + "%";
    }).catch(function () {});
  };
  setInterval(refresh, 15000);
})();
