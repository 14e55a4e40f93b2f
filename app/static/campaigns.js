/* The campaign editor: live preview (debounced), merge-field chips, preview width and part. */
(function () {
  "use strict";
  var form = document.getElementById("campaign-form");
  if (!form) { return; }
  var frame = document.getElementById("preview-frame");
  var textPart = document.getElementById("preview-text");
  var subject = document.getElementById("preview-subject");
  var recipient = document.getElementById("preview-recipient");
  var problems = document.getElementById("preview-problems");
  var linkList = document.getElementById("link-list");
  var linksEmpty = document.getElementById("links-empty");
  var timer = null;
  var inFlight = null;
  var lastTarget = {};

  function activeLanguage() {
    var checked = form.querySelector("input[name=preview_language]:checked");
    return checked ? checked.value : "en";
  }

  function item(text, className) {
    var li = document.createElement("li");
    li.textContent = text;
    if (className) { li.className = className; }
    return li;
  }

  // A link is ticked by default when it is the main button's (any layout). The default
  // follows the content as it is written, until the organizer ticks or unticks the box.
  linkList.addEventListener("change", function (event) {
    if (event.target.name === "petition_url") { event.target.dataset.touched = "true"; }
  });

  function showLinks(links) {
    var known = {};
    linkList.querySelectorAll("input[name=link_url]").forEach(function (input) {
      known[input.value] = input.closest("li");
    });
    links.forEach(function (link) {
      var wanted = link.petition_default ? "true" : "false";
      var existing = known[link.url];
      if (existing) {
        var existingBox = existing.querySelector("input[name=petition_url]");
        if (existing.dataset.default !== wanted && !existingBox.dataset.touched) {
          existingBox.checked = !!link.petition_default;
        }
        existing.dataset.default = wanted;
        return;
      }
      var li = document.createElement("li");
      li.dataset.default = wanted;
      var label = document.createElement("label");
      label.className = "check";
      var hidden = document.createElement("input");
      hidden.type = "hidden"; hidden.name = "link_url"; hidden.value = link.url;
      var box = document.createElement("input");
      box.type = "checkbox"; box.name = "petition_url"; box.value = link.url;
      box.checked = !!link.petition_default;
      label.appendChild(hidden); label.appendChild(box);
      label.appendChild(document.createTextNode(" Petition"));
      var code = document.createElement("code");
      code.textContent = link.url;
      li.appendChild(label); li.appendChild(document.createTextNode(" ")); li.appendChild(code);
      linkList.appendChild(li);
    });
    var current = {};
    links.forEach(function (link) { current[link.url] = true; });
    Object.keys(known).forEach(function (url) {
      if (!current[url]) { known[url].remove(); }
    });
    linksEmpty.hidden = linkList.children.length > 0;
  }

  function show(data) {
    problems.replaceChildren();
    (data.problems || []).forEach(function (p) {
      problems.appendChild(item(p.label + ": " + p.message));
    });
    (data.notes || []).forEach(function (note) { problems.appendChild(item(note, "note")); });
    if (data.html !== undefined) {
      // Links leave the sandboxed frame for a new tab instead of loading inside it.
      frame.srcdoc = data.html.replace("<head>", '<head><base target="_blank">');
      textPart.textContent = data.text;
      subject.textContent = data.subject;
      recipient.textContent = "As " + data.recipient + " would get it.";
    }
    showLinks(data.links || []);
  }

  function refresh() {
    if (inFlight) { inFlight.abort(); }
    inFlight = new AbortController();
    var body = new FormData(form);
    body.set("preview_language", activeLanguage());
    fetch(form.dataset.previewUrl, {
      method: "POST", body: body, credentials: "same-origin", signal: inFlight.signal,
      headers: { "Accept": "application/json" }
    }).then(function (response) {
      if (!response.ok) { throw new Error("status " + response.status); }
      return response.json();
    }).then(show).catch(function (error) {
      if (error.name === "AbortError") { return; }
      problems.replaceChildren(item("The preview could not be updated. Reload the page if this lasts."));
    });
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 400);
  }

  form.addEventListener("input", later);
  form.addEventListener("change", later);

  form.addEventListener("focusin", function (event) {
    var el = event.target;
    var panel = el.closest(".lang-panel");
    if (panel && el.hasAttribute("data-merge-target")) { lastTarget[panel.dataset.language] = el; }
  });

  form.querySelectorAll(".chip[data-insert]").forEach(function (chip) {
    chip.addEventListener("click", function () {
      var panel = chip.closest(".lang-panel");
      var target = lastTarget[panel.dataset.language] || panel.querySelector("[data-body]");
      var snippet = chip.dataset.insert;
      var start = target.selectionStart === null ? target.value.length : target.selectionStart;
      var end = target.selectionEnd === null ? start : target.selectionEnd;
      target.value = target.value.slice(0, start) + snippet + target.value.slice(end);
      target.focus();
      target.setSelectionRange(start + snippet.length, start + snippet.length);
      later();
    });
  });

  form.querySelectorAll("[data-width]").forEach(function (button) {
    button.addEventListener("click", function () {
      form.querySelectorAll("[data-width]").forEach(function (b) {
        b.setAttribute("aria-pressed", String(b === button));
      });
      frame.classList.remove("w-600", "w-375");
      frame.classList.add("w-" + button.dataset.width);
      textPart.classList.remove("w-600", "w-375");
      textPart.classList.add("w-" + button.dataset.width);
    });
  });

  form.querySelectorAll("[data-view]").forEach(function (button) {
    button.addEventListener("click", function () {
      form.querySelectorAll("[data-view]").forEach(function (b) {
        b.setAttribute("aria-pressed", String(b === button));
      });
      var text = button.dataset.view === "text";
      textPart.hidden = !text;
      frame.parentElement.hidden = text;
    });
  });

  refresh();
})();
