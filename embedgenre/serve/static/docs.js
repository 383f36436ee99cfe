"use strict";
// Renders /openapi.json as a list of routes with their parameters (no external assets).
(function () {
  const main = document.getElementById("routes");
  function el(tag, text, cls) { const e = document.createElement(tag); if (text) e.textContent = text; if (cls) e.className = cls; return e; }
  fetch("/openapi.json").then((r) => r.json()).then((spec) => {
    main.replaceChildren();
    const intro = el("section", null, "card");
    intro.append(el("h2", spec.info.title + " " + spec.info.version), el("p", spec.info.summary || ""),
      el("p", "Errors are JSON {\"error\", \"fix\"}. Routes under /v1 and /metrics need 'Authorization: Bearer TOKEN' when the server was started with --token-file.", "muted"));
    main.append(intro);
    for (const [path, ops] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const card = el("section", null, "card");
        card.append(el("h2", method.toUpperCase() + " " + path), el("p", op.summary || "", "muted"));
        const params = (op.parameters || []).map((p) => {
          const s = p.schema || {};
          const range = [s.minimum != null ? "≥ " + s.minimum : "", s.maximum != null ? "≤ " + s.maximum : ""].filter(Boolean).join(", ");
          return p.name + " (" + p.in + (p.required ? ", required" : "") + (range ? ", " + range : "") + ")" + (p.description ? ": " + p.description : "");
        });
        const body = op.requestBody && op.requestBody.content;
        if (body) for (const [type, c] of Object.entries(body)) params.push("body " + type + ": " + Object.keys((c.schema && c.schema.properties) || {}).join(", "));
        if (params.length) { const ul = el("ul"); for (const p of params) ul.append(el("li", p)); card.append(ul); }
        main.append(card);
      }
    }
  }).catch(() => { main.replaceChildren(el("p", "Could not load /openapi.json.", "error")); });
})();
