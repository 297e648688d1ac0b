// mirrorfarm admin page: small conveniences; everything reads and works without them.
document.querySelectorAll("button[data-copy]").forEach(function (b) {
  b.hidden = false;
  b.addEventListener("click", function () {
    var text = document.getElementById(b.dataset.copy).textContent.trim();
    navigator.clipboard.writeText(text).then(function () {
      b.textContent = "Copied";
    }, function () {
      b.textContent = "Copy failed: select the text";
    });
  });
});

// Type-ahead over the upstream's projects: the results redrawn as the admin types.
(function () {
  var input = document.getElementById("pq");
  var out = document.getElementById("project-results");
  if (!input || !out) return;
  var csrfInput = document.querySelector("input[name=csrf]");
  var csrf = csrfInput ? csrfInput.value : "";
  // Which selection the page showed: a change to one replaced meanwhile is refused.
  var seenInput = document.querySelector("#projects input[name=seen]");
  var seen = seenInput ? seenInput.value : "";
  var timer = null;
  var asked = 0;
  function el(tag, text) {
    var e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function form(action, key, label) {
    var f = el("form");
    f.method = "post";
    f.action = "/admin/projects";
    f.className = "inline";
    [["csrf", csrf], ["seen", seen], ["action", action], ["key", key]].forEach(function (kv) {
      var i = el("input");
      i.type = "hidden";
      i.name = kv[0];
      i.value = kv[1];
      f.appendChild(i);
    });
    var b = el("button", label);
    b.type = "submit";
    f.appendChild(b);
    return f;
  }
  function draw(page) {
    var p = el("p", page.total + " upstream projects match.");
    var table = el("table");
    var head = el("tr");
    ["Key", "Name", "Mirrored"].forEach(function (h) {
      var th = el("th", h);
      th.scope = "col";
      head.appendChild(th);
    });
    var thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    var body = el("tbody");
    page.values.forEach(function (proj) {
      var tr = el("tr");
      var key = el("td");
      key.appendChild(el("code", proj.key));
      tr.appendChild(key);
      tr.appendChild(el("td", proj.name));
      var act = el("td");
      if (page.all) act.appendChild(el("span", "(all projects are mirrored)"));
      else if (proj.selected) act.appendChild(form("remove", proj.key, "Remove " + proj.key));
      else act.appendChild(form("add", proj.key, "Add " + proj.key));
      tr.appendChild(act);
      body.appendChild(tr);
    });
    table.appendChild(body);
    out.replaceChildren(p, table);
  }
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      var n = ++asked;
      fetch("/admin/projects.json?pq=" + encodeURIComponent(input.value), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (page) { if (n === asked) draw(page); })
        .catch(function (e) { console.warn("project search failed: " + e); });
    }, 200);
  });
})();
