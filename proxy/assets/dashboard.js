// Fixative's dashboard: polls /api/v1/dashboard and draws it. No
// third-party code; every value from the API (user agents and paths come
// from clients) is inserted as text, never as markup.
"use strict";
(function () {
  const ACTIONS = ["allow", "observe", "limit", "limited", "cloak", "challenge", "tarpit", "block"];
  const SVG = "http://www.w3.org/2000/svg";
  const params = new URLSearchParams(location.search);
  const every = Math.max(500, Number(params.get("refresh") || 2000));
  // The chart's window: the last hour in 10 s buckets, or the last ten
  // minutes in 1 s buckets.
  let windowSeconds = params.get("window") === "600" ? 600 : 3600;
  const $ = (id) => document.getElementById(id);
  const fmt = (n) => (n >= 100 ? Math.round(n) : Math.round(n * 10) / 10).toLocaleString();
  const ago = (t, now) => {
    if (!t) return "–";
    const s = Math.max(0, now - t);
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    return Math.round(s / 3600) + " h ago";
  };
  const cell = (tr, text, cls) => {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  };
  const fill = (id, rows, empty, width) => {
    const body = $(id).tBodies[0];
    body.replaceChildren();
    if (!rows.length) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      const td = cell(tr, empty);
      td.colSpan = width;
      body.appendChild(tr);
      return;
    }
    for (const r of rows) {
      const tr = document.createElement("tr");
      r.forEach((v, i) => cell(tr, v, typeof v === "number" && i > 0 ? "num" : ""));
      body.appendChild(tr);
    }
  };
  const pairs = (id, kv) => fill(id, kv.map(([k, v]) => [k, v]), "–", 2);

  function legend() {
    const l = $("legend");
    for (const a of ACTIONS) {
      const s = document.createElement("span");
      s.textContent = a;
      s.style.setProperty("--c", "var(--" + a + ")");
      l.appendChild(s);
    }
  }

  function chart(series) {
    const svg = $("chart");
    svg.replaceChildren();
    const W = 720, H = 220, top = 14;
    // Only the points of the chosen window (the newest are last).
    const keep = Math.round(windowSeconds / series.step_seconds);
    const rps = {};
    for (const a of ACTIONS) rps[a] = (series.requests_per_second[a] || []).slice(-keep);
    let max = 0;
    for (const a of ACTIONS) for (const v of rps[a]) max = Math.max(max, v);
    const scale = max > 0 ? max * 1.1 : 1;
    for (const f of [0.25, 0.5, 0.75]) {
      const y = top + (H - top) * (1 - f);
      const g = document.createElementNS(SVG, "line");
      g.setAttribute("class", "grid");
      g.setAttribute("x1", 0); g.setAttribute("x2", W);
      g.setAttribute("y1", y); g.setAttribute("y2", y);
      svg.appendChild(g);
    }
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", 4); label.setAttribute("y", 11);
    label.textContent = "max " + fmt(max) + "/s";
    svg.appendChild(label);
    for (const a of ACTIONS) {
      const pts = rps[a] || [];
      if (!pts.some((v) => v > 0)) continue;
      const n = pts.length;
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("data-action", a);
      line.setAttribute("data-last", String(pts[n - 1] || 0));
      line.setAttribute("data-points", String(n));
      line.style.stroke = "var(--" + a + ")";
      line.setAttribute("points", pts.map((v, i) =>
        ((i * W) / Math.max(1, n - 1)).toFixed(1) + "," + (top + (H - top) * (1 - v / scale)).toFixed(1)).join(" "));
      const title = document.createElementNS(SVG, "title");
      title.textContent = a;
      line.appendChild(title);
      svg.appendChild(line);
    }
  }

  function render(d) {
    const now = d.now;
    let lastMinute = 0;
    for (const a of ACTIONS) lastMinute += d.last_minute[a] || 0;
    $("rps").textContent = fmt(lastMinute / 60);
    for (const a of ["block", "limited", "cloak", "challenge", "tarpit"]) {
      $("total-" + a).textContent = (d.totals[a] || 0).toLocaleString();
    }
    chart(d.series);
    fill("crawlers", d.crawlers.map((c) => [c.name, c.category, c.requests,
      Object.entries(c.actions).sort((x, y) => y[1] - x[1]).map(([k, v]) => k + " " + v).join(", ")]),
      "no crawler has named itself yet", 4);
    fill("categories", d.categories.map((c) => [c.name, c.requests]), "none yet", 2);
    fill("violators", d.robots_violators.map((v) => [v.client_ip, v.crawler || v.user_agent, v.site,
      v.requests, v.last_path, ago(v.robots_fetched, now)]), "no violations seen", 6);
    const p = d.protector;
    pairs("protector", [
      ["variant cache", fmt(p.cache_bytes / 1048576) + " of " + fmt(p.cache_capacity_bytes / 1048576) + " MiB"],
      ["workers", p.workers],
      ["queue (running + waiting)", p.queue_depth + " of " + (p.workers + p.queue)],
      ["fallbacks", p.fallbacks],
    ]);
    fill("limiters", d.limiters.keys.map((k) => [k.policy, k.rule, k.keys]), "no limiter keys", 3);
    const c = d.config;
    const r = c.last_reload;
    pairs("config", [
      ["generation", c.generation],
      ["source", c.source],
      ["sites", c.sites],
      ["last reload", r ? (r.ok ? "applied " : "REJECTED ") + ago(r.at, now) : "none since start"],
      ["tracked clients", d.limiters.tracked_clients],
      ["up since", ago(d.since, now)],
    ]);
    if (r && !r.ok) $("config").tBodies[0].rows[3].title = r.message;
    const s = d.state;
    const e = d.evidence;
    pairs("state", [
      ["state backend", s.backend + (s.up ? " (up)" : " (DOWN)")],
      ["bans", s.bans],
      ["evidence ledger", e.enabled ? e.records + " visits, " + e.seals + " seals" : "off"],
      ["evidence dropped", e.enabled ? e.dropped : "–"],
    ]);
    const st = $("status");
    st.textContent = "live · updated " + new Date(now * 1000).toLocaleTimeString();
    st.className = "status live";
  }

  function setWindow(seconds) {
    windowSeconds = seconds;
    for (const w of [3600, 600]) {
      $("window-" + w).setAttribute("aria-pressed", String(w === seconds));
    }
    $("window-label").textContent = seconds === 600 ? "10 minutes" : "hour";
    $("axis-start").textContent = seconds === 600 ? "−10 min" : "−60 min";
    $("axis-mid").textContent = seconds === 600 ? "−5 min" : "−30 min";
    if (last) render(last);
  }

  let last = null;
  let timer = null;
  async function tick() {
    clearTimeout(timer);
    try {
      const step = windowSeconds === 600 ? 1 : 10;
      const r = await fetch("/api/v1/dashboard?step=" + step + "&window=" + windowSeconds, { cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      last = await r.json();
      render(last);
    } catch (e) {
      const st = $("status");
      st.textContent = "offline (" + e.message + "), retrying";
      st.className = "status down";
    }
    timer = setTimeout(tick, every);
  }

  legend();
  for (const w of [3600, 600]) {
    $("window-" + w).addEventListener("click", () => { setWindow(w); tick(); });
  }
  setWindow(windowSeconds);
  tick();
})();
