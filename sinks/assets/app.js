// The live page of topsellers: vanilla JavaScript, no framework, no build step, nothing
// fetched from elsewhere. It reads the service's own API:
//   /assets/profiles.json  the configured profiles (one column each)
//   /v1/categories         the category tree (left)
//   /v1/stream             each column's list, live (server-sent events, `event: list`)
//   /v1/movers/{category}  the movers panel (says "not available" where the route is absent)
//   /readyz, /metrics      the health bar (readiness, ingest rate, freshness)
"use strict";

// Browsers open at most 6 connections to one host over HTTP/1.1: at most this many columns
// stream, the others are polled, so that the page's other requests still find a connection.
const MAX_STREAMS = 4;
const POLL_MS = 2000;
const HEALTH_MS = 2000;
const MOVERS_MS = 5000;
const CATEGORIES_MS = 10000;

const $ = (id) => document.getElementById(id);

const page = {
  profiles: [],        // [{name, half_life_ms}]
  category: null,      // the selected category path ("" is the home page)
  columns: [],         // [{profile, element, list, source, timer}]
  tree: new Map(),     // category -> {parent, children}
  expanded: new Set([""]),
  lastRate: null,      // {purchases, at}
};

// A category path as a URL path: each segment percent-encoded.
function categoryPath(category) {
  return category === "" ? "" : "/" + category.split("/").map(encodeURIComponent).join("/");
}

function label(category) {
  if (category === "") return "Home";
  const segments = category.split("/");
  return segments[segments.length - 1];
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  return { status: response.status, body };
}

function limit() {
  return Number($("limit").value);
}

// ---- the category tree -------------------------------------------------------------------

async function loadCategories() {
  try {
    const { status, body } = await getJSON("/v1/categories");
    if (status !== 200 || !body) {
      if (page.tree.size === 0) {
        $("categories").replaceChildren(el("li", { class: "muted" },
          status === 503 ? "waiting for the first snapshot…" : `categories: HTTP ${status}`));
      }
      return;
    }
    const tree = new Map();
    for (const c of body.categories) tree.set(c.category, { parent: c.parent, children: c.children });
    const changed = tree.size !== page.tree.size;
    page.tree = tree;
    if (changed) renderTree();
    if (page.category === null) select(fromHash());
  } catch (_) {
    // The service is restarting: the next round retries.
  }
}

function renderTree() {
  const root = $("categories");
  root.replaceChildren();
  if (page.tree.has("")) root.append(treeNode(""));
}

function treeNode(category) {
  const node = page.tree.get(category) || { children: [] };
  const open = page.expanded.has(category);
  const li = el("li", { "data-category": category });
  const toggle = el("button", { class: "toggle", type: "button", title: "expand" },
    node.children.length === 0 ? "" : open ? "▾" : "▸");
  toggle.disabled = node.children.length === 0;
  toggle.addEventListener("click", () => {
    if (page.expanded.has(category)) page.expanded.delete(category);
    else page.expanded.add(category);
    renderTree();
  });
  const link = el("a", {
    href: "#" + encodeURIComponent(category),
    class: category === page.category ? "category selected" : "category",
    "data-category": category,
  }, label(category));
  link.addEventListener("click", (event) => {
    event.preventDefault();
    page.expanded.add(category);
    select(category);
    renderTree();
  });
  li.append(toggle, link);
  if (open && node.children.length > 0) {
    const ul = el("ul");
    for (const child of node.children) ul.append(treeNode(child));
    li.append(ul);
  }
  return li;
}

function fromHash() {
  const hash = decodeURIComponent(location.hash.slice(1));
  return page.tree.has(hash) ? hash : "";
}

// ---- the lists, one column per profile ----------------------------------------------------

function select(category) {
  page.category = category;
  history.replaceState(null, "", "#" + encodeURIComponent(category));
  for (let c = category; c; c = (page.tree.get(c) || {}).parent) page.expanded.add(c);
  $("title").textContent = label(category);
  const crumbs = [];
  for (let c = category; c !== null && c !== undefined; c = (page.tree.get(c) || {}).parent) {
    crumbs.unshift(c);
    if (c === "") break;
  }
  $("breadcrumb").replaceChildren(...crumbs.flatMap((c, at) => {
    const link = el("a", { href: "#", "data-category": c }, label(c));
    link.addEventListener("click", (event) => { event.preventDefault(); select(c); renderTree(); });
    return at === 0 ? [link] : [" › ", link];
  }));
  openColumns();
  loadMovers();
}

function closeColumns() {
  for (const column of page.columns) {
    if (column.source) column.source.close();
    if (column.timer) clearInterval(column.timer);
  }
  page.columns = [];
}

function openColumns() {
  closeColumns();
  const container = $("columns");
  container.replaceChildren();
  const category = page.category;
  page.profiles.forEach((profile, at) => {
    const status = el("span", { class: "status" }, "connecting…");
    const list = el("ol", { class: "items", "data-profile": profile.name });
    const element = el("div", { class: "column", "data-profile": profile.name },
      el("h3", {}, profile.name, el("span", { class: "sub" }, at === 0 ? " half-life · default" : " half-life")),
      status, list);
    container.append(element);
    const column = { profile: profile.name, element, list, status, source: null, timer: null };
    page.columns.push(column);
    const query = `category=${encodeURIComponent(category)}&profile=${encodeURIComponent(profile.name)}&limit=${limit()}`;
    if (at < MAX_STREAMS) {
      const source = new EventSource("/v1/stream?" + query);
      source.addEventListener("list", (event) => show(column, JSON.parse(event.data), "live"));
      source.addEventListener("error", () => {
        if (source.readyState === EventSource.CLOSED) streamFailed(column, category);
        else column.status.textContent = "reconnecting…";
      });
      column.source = source;
    } else {
      const poll = () => pollColumn(column, category);
      poll();
      column.timer = setInterval(poll, POLL_MS);
    }
  });
}

// The stream was refused (e.g. 404 unknown category): the same request to /v1/top says why.
async function streamFailed(column, category) {
  try {
    const { status, body } = await getJSON(topURL(category, column.profile));
    column.status.textContent = body && body.error ? `${body.error} (HTTP ${status})` : `HTTP ${status}`;
  } catch (_) {
    column.status.textContent = "service unreachable";
  }
  column.status.className = "status error";
}

function topURL(category, profile) {
  return `/v1/top${categoryPath(category)}?profile=${encodeURIComponent(profile)}&limit=${limit()}`;
}

async function pollColumn(column, category) {
  try {
    const { status, body } = await getJSON(topURL(category, column.profile));
    if (status === 200) show(column, body, "polled");
    else column.status.textContent = body && body.error ? body.error : `HTTP ${status}`;
  } catch (_) {
    column.status.textContent = "service unreachable";
  }
}

function show(column, doc, how) {
  if (doc.category !== page.category) return;
  const before = new Map();
  for (const li of column.list.children) before.set(li.dataset.itemId, Number(li.dataset.rank));
  const rows = doc.items.map((item) => {
    const was = before.get(item.item_id);
    const moved = was === undefined ? "new" : was > item.rank ? "up" : was < item.rank ? "down" : "";
    const li = el("li", { class: moved, "data-item-id": item.item_id, "data-rank": item.rank },
      el("span", { class: "rank" }, item.rank),
      el("span", { class: "id" }, item.item_id),
      el("span", { class: "score" }, formatScore(item.score)));
    if (item.available === false) li.classList.add("unavailable");
    return li;
  });
  if (before.size === 0) rows.forEach((li) => li.classList.remove("new"));
  column.list.replaceChildren(...rows);
  column.element.dataset.category = doc.category;
  column.element.dataset.asOf = doc.as_of;
  column.status.className = "status";
  column.status.textContent = `${how} · as of ${doc.as_of.replace("T", " ").replace("Z", "")}` +
    (rows.length === 0 ? " · no purchases yet" : "");
  $("as-of").textContent = doc.as_of.slice(11, 19);
}

function formatScore(score) {
  return score >= 100 ? score.toFixed(0) : score.toPrecision(3);
}

// ---- movers -----------------------------------------------------------------------------

async function loadMovers() {
  const category = page.category;
  if (category === null) return;
  const body = $("movers-body");
  let answer;
  try {
    answer = await getJSON(`/v1/movers${categoryPath(category)}?limit=10`);
  } catch (_) {
    body.replaceChildren("movers not available (service unreachable)");
    return;
  }
  if (category !== page.category) return;
  const { status, body: doc } = answer;
  if (status !== 200 || !doc || !Array.isArray(doc.items)) {
    const why = doc && doc.error ? doc.error : `HTTP ${status}`;
    body.className = "muted";
    body.replaceChildren(status === 404 && /route/.test(why)
      ? "movers not available on this service"
      : `movers not available: ${why}`);
    $("movers-profiles").textContent = "";
    return;
  }
  $("movers-profiles").textContent = `${doc.short} against ${doc.long}`;
  body.className = "";
  if (doc.items.length === 0) {
    body.replaceChildren(el("p", { class: "muted" }, "no movers here yet"));
    return;
  }
  const table = el("table", { class: "movers" },
    el("thead", {}, el("tr", {}, el("th", {}, "#"), el("th", {}, "item"),
      el("th", {}, "momentum"), el("th", {}, "score"))));
  const rows = el("tbody");
  for (const item of doc.items) {
    rows.append(el("tr", { "data-item-id": item.item_id },
      el("td", {}, item.rank), el("td", {}, item.item_id),
      el("td", {}, "×" + Number(item.momentum).toFixed(2)), el("td", {}, formatScore(item.score))));
  }
  table.append(rows);
  body.replaceChildren(table);
}

// ---- health -----------------------------------------------------------------------------

function metricValue(text, name) {
  const match = text.match(new RegExp("^" + name + " ([^\\s]+)$", "m"));
  return match ? Number(match[1]) : null;
}

function duration(seconds) {
  if (seconds === null || !isFinite(seconds)) return "–";
  if (seconds < 0) seconds = 0;
  if (seconds < 10) return seconds.toFixed(1) + " s";
  if (seconds < 120) return seconds.toFixed(0) + " s";
  if (seconds < 7200) return (seconds / 60).toFixed(0) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

async function loadHealth() {
  const ready = $("ready");
  try {
    const { status, body } = await getJSON("/readyz");
    ready.className = "badge " + (status === 200 ? "ok" : "wait");
    ready.textContent = status === 200 ? "ready" : "not ready";
    ready.title = body && body.reason ? body.reason : "/readyz";
  } catch (_) {
    ready.className = "badge down";
    ready.textContent = "unreachable";
  }
  try {
    const response = await fetch("/metrics", { cache: "no-store" });
    const text = await response.text();
    const purchases = metricValue(text, "topsellers_purchases_total");
    const now = performance.now();
    if (purchases !== null) {
      if (page.lastRate && now > page.lastRate.at) {
        const rate = (purchases - page.lastRate.purchases) / ((now - page.lastRate.at) / 1000);
        $("rate").textContent = rate >= 0 ? Math.round(rate).toLocaleString("en") : "–";
      }
      page.lastRate = { purchases, at: now };
    }
    $("lag").textContent = duration(metricValue(text, "topsellers_publish_lag_seconds"));
    const watermark = metricValue(text, "topsellers_watermark_seconds");
    $("freshness").textContent = watermark === null ? "–" : duration(Date.now() / 1000 - watermark);
  } catch (_) {
    $("rate").textContent = "–";
  }
}

// ---- start ------------------------------------------------------------------------------

async function start() {
  $("limit").addEventListener("change", () => openColumns());
  window.addEventListener("hashchange", () => {
    const category = fromHash();
    if (category !== page.category) { select(category); renderTree(); }
  });
  loadHealth();
  setInterval(loadHealth, HEALTH_MS);
  for (;;) {
    try {
      const { status, body } = await getJSON("/assets/profiles.json");
      if (status === 200 && body) { page.profiles = body.profiles; break; }
    } catch (_) { /* retried */ }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  // Until the first snapshot, /v1/categories answers 503: retried every POLL_MS.
  while (page.category === null) {
    await loadCategories();
    if (page.category === null) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  setInterval(loadCategories, CATEGORIES_MS);
  setInterval(loadMovers, MOVERS_MS);
}

start();
