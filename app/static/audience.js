// Audience pages: copy the sign-up snippet, follow an import, edit segment rules.
(function () {
  "use strict";

  // Copy buttons: <button data-copy="element-id">
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      source.select();
      var done = function () { button.textContent = "Copied"; };
      if (navigator.clipboard) {
        navigator.clipboard.writeText(source.value).then(done, function () { document.execCommand("copy"); done(); });
      } else {
        document.execCommand("copy");
        done();
      }
    });
  });

  // Import progress: poll the small JSON endpoint until the import ends, then show the report.
  var importBox = document.getElementById("import");
  if (importBox) {
    var state = importBox.getAttribute("data-state");
    var url = importBox.getAttribute("data-status-url");
    var bar = importBox.querySelector(".progress");
    var phase = document.getElementById("import-phase");
    var words = { queued: "Waiting to start…", reading: "Reading the file…", saving: "Saving members…", running: "Working…" };
    var poll = function () {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) { return response.json(); })
        .then(function (data) {
          bar.querySelector("span").style.width = data.percent + "%";
          bar.setAttribute("aria-valuenow", data.percent);
          if (data.status === "queued" || data.status === "running") {
            var text = words[data.phase] || words.running;
            if (data.rows_read) { text += " " + data.rows_read.toLocaleString() + " rows"; }
            phase.textContent = text + " (" + data.percent + "%)";
            window.setTimeout(poll, 700);
          } else {
            window.location.reload();
          }
        })
        .catch(function () { window.setTimeout(poll, 2000); });
    };
    if (state === "queued" || state === "running") { poll(); }
  }

  // Segment rule editor: rows of (field, operator, value); a debounced live count.
  var editor = document.getElementById("rule-editor");
  if (!editor) { return; }
  var schema = JSON.parse(document.getElementById("segment-schema").textContent);
  // Fields, operators and choices arrive as lists, in the order the menus show them; the
  // first operator and choice of a field is what choosing that field selects.
  var fields = {};
  schema.fields.forEach(function (f) { fields[f.name] = f; });
  var hidden = document.getElementById("rules");
  var matchSelect = document.getElementById("match");
  var countBox = document.getElementById("segment-count");
  var noValue = schema.no_value_ops;
  var timer = null;

  function option(value, label, selected) {
    var o = document.createElement("option");
    o.value = value;
    o.textContent = label;
    if (selected) { o.selected = true; }
    return o;
  }

  function valueInput(rule, spec) {
    var input;
    if (spec.kind === "list") {
      input = document.createElement("select");
      schema.lists.forEach(function (l) { input.appendChild(option(String(l.id), l.name, String(rule.value) === String(l.id))); });
    } else if (spec.choices) {
      input = document.createElement("select");
      spec.choices.forEach(function (c) { input.appendChild(option(c.value, c.label, rule.value === c.value)); });
    } else {
      input = document.createElement("input");
      input.type = spec.kind === "date" && rule.op !== "within_days" ? "date" : (rule.op === "within_days" ? "number" : "text");
      input.value = Array.isArray(rule.value) ? rule.value.join(", ") : (rule.value === undefined ? "" : rule.value);
      if (rule.op === "in") { input.placeholder = "values, separated by commas"; }
    }
    input.className = "rule-value";
    input.setAttribute("aria-label", "Value");
    if (noValue.indexOf(rule.op) >= 0) { input.hidden = true; }
    return input;
  }

  function render(rules) {
    editor.innerHTML = "";
    rules.forEach(function (rule, index) {
      var spec = fields[rule.field] || fields.email;
      var row = document.createElement("div");
      row.className = "rule";
      row.dataset.index = index;
      var field = document.createElement("select");
      field.setAttribute("aria-label", "Field");
      schema.fields.forEach(function (f) { field.appendChild(option(f.name, f.label, f.name === rule.field)); });
      var op = document.createElement("select");
      op.setAttribute("aria-label", "Operator");
      spec.ops.forEach(function (o) { op.appendChild(option(o.op, o.label, o.op === rule.op)); });
      var cells = [field];
      if (spec.kind === "attribute") {
        var key = document.createElement("input");
        key.type = "text";
        key.placeholder = "custom field name";
        key.value = rule.key || "";
        key.className = "rule-key";
        key.setAttribute("aria-label", "Custom field name");
        cells.push(key);
      }
      cells.push(op, valueInput(rule, spec));
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "button small";
      remove.textContent = "Remove";
      remove.addEventListener("click", function () { var r = read(); r.splice(index, 1); render(r); changed(); });
      cells.push(remove);
      cells.forEach(function (c) { row.appendChild(c); });
      field.addEventListener("change", function () {
        var r = read();
        r[index] = blankRule(field.value);
        render(r);
        changed();
      });
      op.addEventListener("change", function () { var r = read(); render(r); changed(); });
      row.addEventListener("input", changed);
      editor.appendChild(row);
    });
  }

  function blankRule(name) {
    var spec = fields[name];
    var rule = { field: name, op: spec.ops[0].op };
    if (spec.choices) { rule.value = spec.choices[0].value; }
    if (spec.kind === "list" && schema.lists.length) { rule.value = schema.lists[0].id; }
    return rule;
  }

  function read() {
    var rules = [];
    editor.querySelectorAll(".rule").forEach(function (row) {
      var selects = row.querySelectorAll("select");
      var field = selects[0].value;
      var spec = fields[field];
      var opSelect = row.querySelector("select[aria-label=Operator]");
      var rule = { field: field, op: opSelect.value };
      var key = row.querySelector(".rule-key");
      if (key) { rule.key = key.value; }
      if (noValue.indexOf(rule.op) < 0) {
        var v = row.querySelector(".rule-value").value;
        if (spec.kind === "list") { rule.value = parseInt(v, 10); }
        else if (rule.op === "within_days") { rule.value = parseInt(v, 10) || v; }
        else { rule.value = v; }
      }
      rules.push(rule);
    });
    return rules;
  }

  function changed() {
    hidden.value = JSON.stringify(read());
    countBox.textContent = "Counting…";
    window.clearTimeout(timer);
    timer = window.setTimeout(count, 400);
  }

  function count() {
    fetch(editor.getAttribute("data-count-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": editor.getAttribute("data-csrf") },
      body: JSON.stringify({ rules: read(), match: matchSelect.value })
    }).then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, data: data }; });
    }).then(function (result) {
      editor.querySelectorAll(".rule-error").forEach(function (e) { e.remove(); });
      if (result.ok) {
        var n = result.data.count;
        countBox.textContent = n.toLocaleString() + (n === 1 ? " member matches" : " members match");
      } else {
        countBox.textContent = "Fix the rules to see the count.";
        (result.data.problems || []).forEach(function (p) {
          var row = p.rule === null ? null : editor.querySelector('.rule[data-index="' + p.rule + '"]');
          var message = document.createElement("p");
          message.className = "field-error rule-error";
          message.textContent = p.message;
          (row || editor).appendChild(message);
        });
      }
    }).catch(function () { countBox.textContent = "Couldn't count right now."; });
  }

  document.getElementById("add-rule").addEventListener("click", function () {
    var r = read();
    // A new rule starts on the first field of the menu (List) when there is a list to pick.
    r.push(blankRule(schema.lists.length ? schema.fields[0].name : "local"));
    render(r);
    changed();
  });
  matchSelect.addEventListener("change", changed);
  document.getElementById("segment-form").addEventListener("submit", function () { hidden.value = JSON.stringify(read()); });

  var initial = [];
  try { initial = JSON.parse(hidden.value || "[]"); } catch (e) { initial = []; }
  render(initial);
  changed();
})();
