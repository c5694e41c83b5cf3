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
  var texts = { en: { close: "Close", skip: "Skip" }, ru: { close: "Закрыть", skip: "Пропустить" } };
  var box, state;

  function text(key) { return (texts[state && state.locale] || texts.en)[key]; }

  function el(tag, props, styles, children) {
    var node = document.createElement(tag);
    Object.keys(props || {}).forEach(function (k) { node[k] = props[k]; });
    Object.keys(styles || {}).forEach(function (k) { node.style[k] = styles[k]; });
    (children || []).forEach(function (c) { node.appendChild(c); });
    return node;
  }

  function button(label, onClick, primary) {
    var b = el("button", { type: "button", textContent: label }, {
      minWidth: "44px", minHeight: "44px", margin: "3px", padding: "0 10px",
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
      if (r.ok) { show(r.body, true); } else { close(); }
    }, close);
  }

  function close() { if (box) { box.remove(); box = null; } }

  // `focus`: the visitor was answering, so the next question takes the focus (the button
  // pressed is gone); a survey that just popped up never takes it.
  function show(next, focus) {
    state = next;
    try { localStorage.setItem(storeKey, next.visitor); } catch (e) { /* private mode */ }
    var body = box.querySelector("[data-otklik-body]");
    while (body.firstChild) { body.removeChild(body.firstChild); }
    next.messages.forEach(function (m) { body.appendChild(el("p", { textContent: m })); });
    if (next.hint) {
      body.appendChild(el("p", { textContent: next.hint }, { color: "#991b1b" }))
        .setAttribute("role", "alert");
    }
    var p = next.prompt;
    if (!p) {
      if (focus) { box.querySelector("button").focus(); }
      setTimeout(close, 4000);
      return;
    }
    body.appendChild(el("p", { textContent: p.text, id: "otklik-q" }, { fontWeight: "bold" }));
    var row = el("div", {}, { display: "flex", flexWrap: "wrap" });
    row.setAttribute("role", "group");
    row.setAttribute("aria-labelledby", "otklik-q");
    body.appendChild(row);
    var actions = el("div", {}, { display: "flex", justifyContent: "flex-end", flexWrap: "wrap" });
    if (p.kind === "text") {
      var area = el("textarea", { rows: 3 }, {
        width: "100%", boxSizing: "border-box", font: "inherit", padding: "6px",
        border: "2px solid #6b7280", borderRadius: "6px", margin: "3px" });
      area.setAttribute("aria-labelledby", "otklik-q");
      row.appendChild(area);
      actions.appendChild(button("OK", function () {
        // an empty box skips an optional question, as the hosted page's Next does
        answer(p.optional && !area.value.trim() ? { skip: true } : { text: area.value });
      }, true));
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
      actions.appendChild(button("OK", function () { answer({ picked: picked }); }, true));
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
      actions.insertBefore(button(text("skip"), function () { answer({ skip: true }); }),
                           actions.firstChild);
    }
    if (actions.firstChild) { body.appendChild(actions); }
    var first = row.querySelector("textarea, button");
    if (focus && first) { first.focus(); }
  }

  function open() {
    var visitor = null;
    try { visitor = localStorage.getItem(storeKey); } catch (e) { /* private mode */ }
    post("/start", { visitor: visitor, page: location.href.slice(0, 500) }).then(function (r) {
      if (!r.ok || !r.body.prompt) { return; }
      state = r.body;
      var shut = button("×", close);
      shut.setAttribute("aria-label", text("close"));
      // border-box and the viewport's width: on a phone the box must not run off the left
      box = el("div", {}, {
        position: "fixed", right: "16px", bottom: "16px", zIndex: "2147483647",
        boxSizing: "border-box", maxWidth: "min(360px, calc(100vw - 32px))",
        background: "#fff", color: "#111827", borderRadius: "10px",
        boxShadow: "0 4px 16px rgba(0,0,0,.25)", padding: "14px",
        font: "15px system-ui, sans-serif" }, [
          el("div", {}, { display: "flex", justifyContent: "space-between",
                          alignItems: "center", gap: "8px" }, [
            el("strong", { textContent: r.body.title }), shut ]),
          el("div", {}, {}) ]);
      box.setAttribute("role", "dialog");
      box.setAttribute("aria-label", r.body.title);
      box.addEventListener("keydown", function (event) {
        if (event.key === "Escape") { close(); }
      });
      box.lastChild.setAttribute("data-otklik-body", "");
      box.setAttribute("data-otklik-widget", survey);
      document.body.appendChild(box);
      show(r.body, false);
    }, function () { /* the survey is optional: a network error shows nothing */ });
  }

  setTimeout(open, delay);
})();
