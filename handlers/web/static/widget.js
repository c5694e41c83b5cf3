// Otklik's pop-up survey. Embed with one tag:
//   <script src="https://otklik.example.com/widget.js" data-survey="nps" async></script>
// Optional: data-delay="5" (seconds before it opens). The site's origin must be listed in
// WIDGET_ORIGINS. It builds its own small overlay with DOM calls (no innerHTML, no inline
// <style>), so it works under a strict Content-Security-Policy on the embedding page.
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) { return; }
  var base = new URL(script.src, location.href).origin;
  var survey = script.getAttribute("data-survey") || "nps";
  var delay = Number(script.getAttribute("data-delay") || "0") * 1000;
  var storeKey = "otklik-visitor";
  var api = base + "/api/v1/widget/" + encodeURIComponent(survey);
  var box, state;

  function el(tag, props, styles, children) {
    var node = document.createElement(tag);
    Object.keys(props || {}).forEach(function (k) { node[k] = props[k]; });
    Object.keys(styles || {}).forEach(function (k) { node.style[k] = styles[k]; });
    (children || []).forEach(function (c) { node.appendChild(c); });
    return node;
  }

  function button(label, onClick, primary) {
    var b = el("button", { type: "button", textContent: label }, {
      minWidth: "40px", minHeight: "40px", margin: "3px", padding: "0 10px",
      borderRadius: "6px", cursor: "pointer", font: "inherit",
      border: "2px solid #1d4ed8", background: primary ? "#1d4ed8" : "#fff",
      color: primary ? "#fff" : "#1d4ed8" });
    b.addEventListener("click", onClick);
    return b;
  }

  function post(path, body) {
    return fetch(api + path, { method: "POST", headers: { "Content-Type": "application/json" },
                               body: JSON.stringify(body) })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, body: j }; }); });
  }

  function answer(extra) {
    var body = { visitor: state.visitor, session_id: state.session_id,
                 position: state.prompt.position, picked: [] };
    Object.keys(extra).forEach(function (k) { body[k] = extra[k]; });
    post("/answer", body).then(function (r) {
      if (r.ok) { show(r.body); } else { close(); }
    }, close);
  }

  function close() { if (box) { box.remove(); box = null; } }

  function show(next) {
    state = next;
    try { localStorage.setItem(storeKey, next.visitor); } catch (e) { /* private mode */ }
    var body = box.querySelector("[data-otklik-body]");
    while (body.firstChild) { body.removeChild(body.firstChild); }
    next.messages.forEach(function (m) { body.appendChild(el("p", { textContent: m })); });
    if (next.hint) {
      body.appendChild(el("p", { textContent: next.hint, role: "alert" }, { color: "#991b1b" }));
    }
    var p = next.prompt;
    if (!p) { setTimeout(close, 4000); return; }
    body.appendChild(el("p", { textContent: p.text, id: "otklik-q" }, { fontWeight: "bold" }));
    var row = el("div", { role: "group" }, { display: "flex", flexWrap: "wrap" });
    row.setAttribute("aria-labelledby", "otklik-q");
    body.appendChild(row);
    if (p.kind === "text") {
      var area = el("textarea", { rows: 3 }, { width: "100%", boxSizing: "border-box" });
      area.setAttribute("aria-labelledby", "otklik-q");
      row.appendChild(area);
      row.appendChild(button("OK", function () { answer({ text: area.value }); }, true));
    } else if (p.multiple) {
      var picked = [];
      p.options.forEach(function (o, i) {
        var b = button(o.label, function () {
          var at = picked.indexOf(i);
          if (at < 0) { picked.push(i); } else { picked.splice(at, 1); }
          b.setAttribute("aria-pressed", String(at < 0));
          b.style.background = at < 0 ? "#dbeafe" : "#fff";
        });
        b.setAttribute("aria-pressed", "false");
        row.appendChild(b);
      });
      row.appendChild(button("OK", function () { answer({ picked: picked }); }, true));
    } else {
      p.options.forEach(function (o, i) {
        row.appendChild(button(o.label, function () { answer({ picked: [i] }); }));
      });
    }
    if (p.low_label || p.high_label) {
      body.appendChild(el("p", { textContent: (p.low_label || "") + " … " + (p.high_label || "") },
                          { fontSize: "12px", color: "#4b5563" }));
    }
    if (p.optional) {
      body.appendChild(button("→", function () { answer({ skip: true }); }));
    }
  }

  function open() {
    var visitor = null;
    try { visitor = localStorage.getItem(storeKey); } catch (e) { /* private mode */ }
    post("/start", { visitor: visitor, page: location.href.slice(0, 500) }).then(function (r) {
      if (!r.ok || !r.body.prompt) { return; }
      box = el("div", { role: "dialog" }, {
        position: "fixed", right: "16px", bottom: "16px", zIndex: "2147483647",
        maxWidth: "360px", background: "#fff", color: "#111827", borderRadius: "10px",
        boxShadow: "0 4px 16px rgba(0,0,0,.25)", padding: "14px",
        font: "15px system-ui, sans-serif" }, [
          el("div", {}, { display: "flex", justifyContent: "space-between" }, [
            el("strong", { textContent: r.body.title }),
            button("×", close) ]),
          el("div", {}, {}) ]);
      box.setAttribute("aria-label", r.body.title);
      box.lastChild.setAttribute("data-otklik-body", "");
      box.setAttribute("data-otklik-widget", survey);
      document.body.appendChild(box);
      show(r.body);
    }, function () { /* the survey is optional: a network error shows nothing */ });
  }

  setTimeout(open, delay);
})();
