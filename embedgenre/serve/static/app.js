"use strict";
// The embedgenre web page: predict genres of a poster and/or a plot, browse similar movies,
// search; browse the catalog (#/), a movie's page (#/movie/ID) and the label audit (#/audit).
// Views live in the URL's hash, so links can be shared and Back goes where it should.
// Talks only to this server's /v1 API; every asset is local.
(function () {
  const MAX_UPLOAD = 10 * 1024 * 1024;
  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem("embedgenre-token") || "";
  let posterFile = null;

  function headers() { return token ? { Authorization: "Bearer " + token } : {}; }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children) if (c != null) e.append(c);
    return e;
  }

  function showError(error, fix) {
    const box = $("error");
    box.replaceChildren(el("strong", { text: error }), fix ? el("span", { text: fix }) : null);
    box.hidden = false;
  }
  function clearError() { $("error").hidden = true; }

  async function api(path, options) {
    let res;
    try {
      res = await fetch(path, Object.assign({}, options, { headers: headers() }));
    } catch (e) {
      throw { error: "The server cannot be reached.", fix: "Check that `embedgenre serve` is running." };
    }
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (!res.ok) {
      if (res.status === 401) $("token-box").hidden = false;
      throw body && body.error ? body : { error: "The server answered " + res.status + ".", fix: "Retry." };
    }
    return body;
  }

  function thumb(img, url) {
    if (!url) { img.alt = "no poster"; return; }
    if (!token) { img.src = url; return; }
    fetch(url, { headers: headers() }).then((r) => (r.ok ? r.blob() : null))
      .then((b) => { if (b) img.src = URL.createObjectURL(b); });
  }

  // -- words for what the API names: heads and scores -------------------------------------

  const METHOD_WORDS = {
    linear: "linear classifier", mlp: "small neural network", knn: "vote of the nearest movies",
    mlknn: "vote of the nearest movies (ML-kNN)", zeroshot: "match with the genre names (zero-shot)",
  };
  const MODALITY_WORDS = { poster: "poster", plot: "plot", both: "poster + plot" };

  // "linear classifier on poster + plot" from {name, method, modality}; the name alone is parsed
  // when the index does not record the method ("linear-both-late").
  function headWords(h) {
    if (!h) return "";
    const parts = String(h.name || "").split("-");
    const method = h.method || (METHOD_WORDS[parts[0]] ? parts[0] : null);
    const modality = h.modality || (MODALITY_WORDS[parts[1]] ? parts[1] : null);
    if (!method) return h.name || "";
    return (METHOD_WORDS[method] || method) + (modality ? " on " + (MODALITY_WORDS[modality] || modality) : "");
  }
  function headTitle(h) { return h ? "head " + h.name + (h.fusion ? " (" + h.fusion + " fusion)" : "") : ""; }
  function showHead(target, h) {
    $(target).textContent = h ? "by a " + headWords(h) : "";
    $(target).title = headTitle(h);
  }

  function when(iso) {
    const d = new Date(iso || "");
    if (isNaN(d)) return "";
    const p = (v) => String(v).padStart(2, "0");
    return d.getUTCFullYear() + "-" + p(d.getUTCMonth() + 1) + "-" + p(d.getUTCDate()) + " " + p(d.getUTCHours()) + ":" + p(d.getUTCMinutes());
  }

  const COSINE_NOTE = "Similarity: the cosine of the two movies' embeddings, from 0 (unrelated) to 1 (the same).";
  const MATCH_NOTE = "Match: poster and plot similarity combined, each measured against a typical movie of the catalog " +
    "(standardised: 0 is typical, 3 or more is unusually close).";

  // A result's score labelled by what it is: a cosine ("similarity 0.71") or, when poster and plot
  // are combined, a standardised match ("match 5.8"); the title says more.
  function scoreLabel(doc, n) {
    const fused = /^standardised/.test(doc.scoring || "");
    if (!fused) return el("span", { class: "muted score-label", title: COSINE_NOTE, text: "similarity " + n.score.toFixed(2) });
    const cos = Object.entries(n.cosines || {}).map(([m, v]) => m + " similarity " + v.toFixed(2)).join(", ");
    return el("span", { class: "muted score-label", title: MATCH_NOTE + (cos ? " " + cos + "." : ""),
      text: "match " + n.score.toFixed(1) + " (poster + plot, standardised)" });
  }
  function scoreLegend(doc) {
    return /^standardised/.test(doc.scoring || "") ? MATCH_NOTE : COSINE_NOTE;
  }

  async function loadIndex() {
    try {
      const info = await api("/v1/index");
      const updated = when(info.updated);
      $("index-info").textContent = info.items + " movies" + (updated ? " · updated " + updated : "");
      $("index-info").title = "index " + info.name;
      const sel = $("head");
      sel.replaceChildren(el("option", { value: "", text: "best for the input" }));
      const details = info.head_details || info.heads.map((name) => ({ name: name }));
      for (const h of details) sel.append(el("option", { value: h.name, text: headWords(h), title: headTitle(h) }));
      genreChips(Object.keys(info.genres || {}));
    } catch (e) { $("index-info").textContent = "index unavailable"; showError(e.error, e.fix); }
  }

  function setPoster(file) {
    clearError();
    if (!file) return;
    if (file.size > MAX_UPLOAD) {
      posterFile = null;
      showError("This poster is " + (file.size / 1048576).toFixed(1) + " MB, over the 10 MB limit.", "Choose a smaller image.");
      return;
    }
    posterFile = file;
    const img = $("preview");
    img.src = URL.createObjectURL(file);
    img.hidden = false;
    $("drop-text").textContent = file.name;
  }

  function bars(result, target) {
    const list = $(target || "bars");
    list.replaceChildren();
    for (const g of result.ranking) {
      const pct = (v) => Math.max(0, Math.min(100, v * 100)).toFixed(1) + "%";
      const fill = el("span", { class: "fill" }); fill.style.width = pct(g.score);
      const tick = el("span", { class: "tick", title: "threshold " + g.threshold }); tick.style.left = pct(g.threshold);
      list.append(el("li", { class: g.predicted ? "yes genre" : "genre", "data-genre": g.genre },
        el("span", { class: "name", text: g.genre }),
        el("span", { class: "track" }, fill, tick),
        el("span", { class: "score", text: g.score.toFixed(2) })));
    }
  }

  function why(result, target) {
    const box = $(target || "why");
    box.replaceChildren();
    const entries = Object.entries(result.neighbours || {});
    if (!entries.length) { box.append(el("p", { class: "muted", text: "No genre passed its threshold." })); return; }
    for (const [genre, items] of entries) {
      const row = el("div", { class: "why-list" });
      for (const n of items) {
        const img = el("img", { alt: n.title || n.id });
        thumb(img, "/v1/thumbnails/" + encodeURIComponent(n.id));
        const link = el("a", { href: "#/movie/" + encodeURIComponent(n.id), "data-id": n.id }, img);
        row.append(el("figure", {}, link, el("figcaption", {}, el("span", { text: n.title || n.id }), el("br"),
          el("span", { class: "muted", title: COSINE_NOTE, text: "similarity " + n.score.toFixed(2) }))));
      }
      box.append(el("div", { class: "why-genre", "data-genre": genre }, el("b", { text: genre }), items.length ? row : el("span", { class: "muted", text: "none nearby" })));
    }
  }

  function grid(doc, title) {
    $("results").hidden = false;
    $("results-title").textContent = title;
    $("results-note").textContent = [scoreLegend(doc)].concat(doc.notes || []).join(" · ");
    const box = $("grid");
    box.replaceChildren();
    for (const n of doc.neighbours) box.append(movieTile(n, scoreLabel(doc, n)));
    if (!doc.neighbours.length) box.append(el("p", { class: "muted", text: "Nothing matches." }));
  }

  async function predict(ev) {
    ev.preventDefault();
    clearError();
    const plot = $("plot").value.trim();
    if (!posterFile && !plot) { showError("Give a poster or a plot.", "Drop a poster image, or type a plot."); return; }
    const form = new FormData();
    if (posterFile) form.append("poster", posterFile, posterFile.name);
    if (plot) form.append("plot", plot);
    const title = $("title").value.trim();
    if (title && plot) form.append("title", title);
    if ($("head").value) form.append("head", $("head").value);
    form.append("explain", "true");  // the page shows why each genre
    const btn = $("predict-btn");
    btn.disabled = true;
    try {
      const doc = await api("/v1/predict", { method: "POST", body: form });
      const result = doc.results[0];
      $("prediction").hidden = false;
      showHead("head-name", doc.head);
      bars(result);
      why(result);
      const sim = new FormData();
      if (posterFile) sim.append("poster", posterFile, posterFile.name);
      if (plot) sim.append("plot", plot);
      if (title && plot) sim.append("title", title);
      sim.append("k", "12");
      sim.append("by", posterFile && plot ? "both" : posterFile ? "poster" : "plot");
      grid(await api("/v1/similar", { method: "POST", body: sim }), "Similar movies");
    } catch (e) { showError(e.error, e.fix); } finally { btn.disabled = false; }
  }

  async function search(ev) {
    ev.preventDefault();
    clearError();
    const q = $("search").value.trim();
    if (!q) return;
    try { grid(await api("/v1/search?k=12&q=" + encodeURIComponent(q)), "Search: " + q); }
    catch (e) { showError(e.error, e.fix); }
  }

  // -- browsing: catalog grid, movie pages, the audit ------------------------------------

  const catalog = { genre: "", q: "", page: 1, asked: 0 };  // asked: the latest request's number

  function movieTile(n, extra) {
    const img = el("img", { alt: n.title || n.id, loading: "lazy" });
    thumb(img, n.thumbnail || n.poster || null);
    return el("a", { class: "tile", href: "#/movie/" + encodeURIComponent(n.id), "data-id": n.id }, img,
      el("span", { class: "meta" },
        el("span", { class: "t", text: (n.title || n.id) + (n.year ? " (" + n.year + ")" : "") }),
        el("span", { text: (n.genres || []).join(", ") }),
        extra ? el("br") : null, extra || null));
  }

  function genreChips(genres) {
    const box = $("genre-chips");
    box.replaceChildren();
    for (const g of [""].concat(genres)) {
      const chip = el("button", { type: "button", class: "chip", "data-genre": g, "aria-pressed": String(g === catalog.genre), text: g || "All" });
      chip.addEventListener("click", () => { catalog.genre = g; loadCatalog(false); });
      box.append(chip);
    }
  }

  async function loadCatalog(more) {
    catalog.page = more ? catalog.page + 1 : 1;
    for (const c of document.querySelectorAll("#genre-chips .chip")) c.setAttribute("aria-pressed", String(c.dataset.genre === catalog.genre));
    let url = "/v1/items?per_page=48&page=" + catalog.page;
    if (catalog.genre) url += "&genre=" + encodeURIComponent(catalog.genre);
    if (catalog.q) url += "&q=" + encodeURIComponent(catalog.q);
    const asked = ++catalog.asked;
    try {
      const doc = await api(url);
      if (asked !== catalog.asked) return;  // a newer filter or page was asked for meanwhile
      const box = $("catalog-grid");
      if (!more) box.replaceChildren();
      for (const n of doc.items) box.append(movieTile(n));
      const shown = box.children.length;
      $("catalog-count").textContent = doc.total + " movies" + (catalog.genre ? " · " + catalog.genre : "") + (catalog.q ? " · “" + catalog.q + "”" : "") + (shown < doc.total ? " · showing " + shown : "");
      $("catalog-more").hidden = shown >= doc.total;
    } catch (e) { showError(e.error, e.fix); }
  }

  function chip(text, cls, title) { return el("span", { class: "chip " + (cls || ""), text: text, title: title || "" }); }

  async function showMovie(id) {
    clearError();
    for (const t of ["movie-title", "movie-plot", "movie-note", "movie-head", "movie-similar-note"]) $(t).textContent = "";
    for (const t of ["movie-labelled", "movie-predicted", "movie-bars", "movie-why", "movie-similar"]) $(t).replaceChildren();
    $("movie-title").textContent = "Loading…";
    try {
      const doc = await api("/v1/items/" + encodeURIComponent(id) + "/genres");
      if (location.hash !== "#/movie/" + encodeURIComponent(id)) return;  // moved on meanwhile
      $("movie-title").textContent = (doc.title || doc.id) + (doc.year ? " (" + doc.year + ")" : "");
      document.title = (doc.title || doc.id) + " · embedgenre";
      $("movie-plot").textContent = doc.plot || "";
      const img = $("movie-poster"); img.removeAttribute("src"); img.alt = doc.title || doc.id;
      thumb(img, doc.thumbnail);
      if (!doc.head) {  // nothing can predict here: the labels, and what predictions need
        for (const g of doc.labelled) $("movie-labelled").append(chip(g, "", "labelled"));
        if (!doc.labelled.length) $("movie-labelled").append(el("span", { class: "muted", text: "none" }));
        $("movie-predicted").append(el("span", { class: "muted", text: "no predictions: they need a trained head" }));
        $("movie-note").textContent = doc.no_predictions;
      }
      for (const g of (doc.head ? doc.labelled : [])) {
        const ok = doc.predicted.includes(g);
        $("movie-labelled").append(chip(g + (ok ? " ✓" : " ✗"), ok ? "agree" : "disagree", ok ? "also predicted" : "labelled, not predicted"));
      }
      if (doc.head && !doc.labelled.length) $("movie-labelled").append(el("span", { class: "muted", text: "none" }));
      for (const g of doc.predicted) {
        const ok = doc.labelled.includes(g);
        $("movie-predicted").append(chip(g + (ok ? " ✓" : " +"), ok ? "agree" : "disagree", ok ? "also labelled" : "predicted, not labelled"));
      }
      if (doc.head) {
        if (!doc.predicted.length) $("movie-predicted").append(el("span", { class: "muted", text: "none" }));
        $("movie-note").textContent = "✗ labelled but not predicted · + predicted but not labelled. " + doc.note + ".";
        showHead("movie-head", doc.head);
        bars(doc, "movie-bars");
        why({ neighbours: doc.why }, "movie-why");
      }
      const sim = await api("/v1/similar?k=12&id=" + encodeURIComponent(id));
      if (location.hash !== "#/movie/" + encodeURIComponent(id)) return;  // moved on meanwhile
      $("movie-similar-note").textContent = scoreLegend(sim);
      for (const n of sim.neighbours) $("movie-similar").append(movieTile(n, scoreLabel(sim, n)));
    } catch (e) { $("movie-title").textContent = id; showError(e.error, e.fix); }
  }

  let auditTimer = null;
  async function showAudit() {
    clearError();
    clearTimeout(auditTimer);
    const list = $("audit-list");
    try {
      const res = await fetch("/v1/audit?k=50", { headers: headers() });
      if (res.status === 202) {
        $("audit-note").textContent = "The audit is running (each movie is scored by a model that never saw it)…";
        auditTimer = setTimeout(() => { if (location.hash === "#/audit") showAudit(); }, 1000 * (+res.headers.get("Retry-After") || 2));
        return;
      }
      const doc = await res.json();
      if (!res.ok) { if (res.status === 401) $("token-box").hidden = false; throw doc; }
      $("audit-note").textContent = doc.n_flagged + " of " + doc.n_items + " labelled movies flagged, best evidence first; judged by " + doc.head.spec + (doc.head.name ? " (head " + doc.head.name + ")" : "") + ". " + doc.notes.join("; ") + ".";
      list.replaceChildren();
      for (const f of doc.findings) {
        const img = el("img", { alt: f.title || f.id, loading: "lazy" });
        thumb(img, f.thumbnail);
        const issues = el("div", {});
        for (const i of f.issues) {
          issues.append(el("div", { class: "issue " + i.kind, text: (i.kind === "wrong" ? "looks wrong: " : "looks missing: ") + i.genre + " (held-out score " + i.score.toFixed(2) + ", typical " + i.threshold.toFixed(2) + "; " + i.neighbours + " of 10 neighbours agree)" }));
        }
        list.append(el("li", { "data-id": f.id }, img, el("div", {},
          el("a", { href: "#/movie/" + encodeURIComponent(f.id), text: f.rank + ". " + (f.title || f.id) + (f.year ? " (" + f.year + ")" : "") }),
          el("div", { class: "muted", text: "labelled: " + (f.labelled.join(", ") || "none") + " · predicted: " + (f.predicted.join(", ") || "none") }),
          issues)));
      }
      if (!doc.findings.length) list.append(el("li", { text: "No label looks wrong." }));
    } catch (e) { $("audit-note").textContent = ""; showError(e.error || "The audit failed.", e.fix); }
  }

  function route() {
    const hash = location.hash || "#/";
    const movie = hash.match(/^#\/movie\/(.+)$/);
    const view = movie ? "movie" : hash === "#/audit" ? "audit" : "home";
    for (const v of ["home", "movie", "audit"]) $("view-" + v).hidden = v !== view;
    for (const [v, id] of [["home", "nav-home"], ["audit", "nav-audit"]]) {
      if (v === view) $(id).setAttribute("aria-current", "page"); else $(id).removeAttribute("aria-current");
    }
    if (view !== "movie") document.title = "embedgenre";
    if (movie) { showMovie(decodeURIComponent(movie[1])); $("movie-title").focus(); }
    else if (view === "audit") { showAudit(); $("audit-title").focus(); }
  }

  $("filter-form").addEventListener("submit", (e) => { e.preventDefault(); catalog.q = $("filter").value.trim(); loadCatalog(false); });
  $("catalog-more").addEventListener("click", () => loadCatalog(true));
  document.addEventListener("keydown", (e) => {
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
    if (e.key === "/" && !typing) { e.preventDefault(); location.hash = "#/"; $("filter").focus(); }
    if (e.key === "Escape" && !typing && location.hash.startsWith("#/movie/")) history.back();
  });
  window.addEventListener("hashchange", route);

  const drop = $("drop");
  drop.addEventListener("click", (e) => { if (e.target.tagName !== "LABEL" && e.target.tagName !== "INPUT") $("poster").click(); });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("poster").click(); } });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); setPoster(e.dataTransfer.files[0]); });
  $("poster").addEventListener("change", (e) => setPoster(e.target.files[0]));
  $("predict-form").addEventListener("submit", predict);
  $("search-form").addEventListener("submit", search);
  $("token-save").addEventListener("click", () => {
    token = $("token").value.trim();
    sessionStorage.setItem("embedgenre-token", token);
    $("token-box").hidden = true;
    clearError();
    loadIndex();
    loadCatalog(false);
    route();
  });
  loadIndex();
  loadCatalog(false);
  route();
})();
