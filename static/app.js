// Order lookup page. Every value from an order is untrusted: it is only ever
// put into the page as text (textContent), never as HTML.
"use strict";

const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const HEADER_FIELDS = ["order_uid", "track_number", "entry", "locale", "internal_signature",
  "customer_id", "delivery_service", "shardkey", "sm_id", "date_created", "oof_shard"];
const DELIVERY_FIELDS = ["name", "phone", "zip", "city", "address", "region", "email"];
const PAYMENT_FIELDS = ["transaction", "request_id", "currency", "provider", "amount",
  "payment_dt", "bank", "delivery_cost", "goods_total", "custom_fee"];
const ITEM_FIELDS = ["chrt_id", "track_number", "price", "rid", "name", "sale", "size",
  "total_price", "nm_id", "brand", "status"];

// The page may be mounted under a prefix: resolve API paths against it.
function base() {
  const p = window.location.pathname;
  return p.endsWith("/") ? p : p + "/";
}

function $(id) { return document.getElementById(id); }

// A JSON number token, as the grammar defines it.
const NUMBER_RE = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;

// JSON.parse, except that every number comes back as its text, exactly as
// sent: a JavaScript number would round integers above 2^53 (an amount of
// 9223372036854775807 would read 9223372036854776000). Each number token
// outside a string is quoted, then JSON.parse reads (and checks) the rest.
// (JSON.parse's reviver sees a number's source text only in some browsers.)
function parseExact(text) {
  const parts = [];
  let copied = 0;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      // A string's digits are text; its escapes are JSON.parse's to read.
      i += 1;
      while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
      i += 1;
    } else if (c === "-" || (c >= "0" && c <= "9")) {
      let j = i + 1;
      while (j < text.length && "0123456789eE.+-".includes(text[j])) j += 1;
      const number = text.slice(i, j);
      if (!NUMBER_RE.test(number)) throw new SyntaxError("not a JSON number: " + number);
      parts.push(text.slice(copied, i), '"', number, '"');
      copied = i = j;
    } else {
      i += 1;
    }
  }
  parts.push(text.slice(copied));
  return JSON.parse(parts.join(""));
}

function setStatus(text, kind) {
  const s = $("status");
  s.textContent = text;
  s.className = kind || "";
}

function fillList(dl, obj, fields) {
  dl.replaceChildren();
  for (const f of fields) {
    const dt = document.createElement("dt");
    dt.textContent = f;
    const dd = document.createElement("dd");
    dd.textContent = String(obj[f]);
    dd.dataset.field = f;
    dl.append(dt, dd);
  }
}

function render(order) {
  document.querySelector('[data-field="order_uid"]').textContent = order.order_uid;
  fillList($("order-fields"), order, HEADER_FIELDS.filter((f) => f !== "order_uid"));
  fillList($("delivery-fields"), order.delivery, DELIVERY_FIELDS);
  fillList($("payment-fields"), order.payment, PAYMENT_FIELDS);
  const headRow = $("items").querySelector("thead tr");
  headRow.replaceChildren(...ITEM_FIELDS.map((f) => {
    const th = document.createElement("th");
    th.textContent = f;
    return th;
  }));
  $("items").querySelector("tbody").replaceChildren(...order.items.map((item) => {
    const tr = document.createElement("tr");
    for (const f of ITEM_FIELDS) {
      const td = document.createElement("td");
      td.textContent = String(item[f]);
      td.dataset.label = f;
      tr.append(td);
    }
    return tr;
  }));
  $("order").hidden = false;
}

// The lookup whose answer may be shown; an earlier one still in flight is
// aborted, and its answer dropped should it arrive anyway.
let current = null;

async function show(id, push) {
  if (current) current.abort();
  const lookup = new AbortController();
  current = lookup;
  const stale = () => current !== lookup;
  id = id.trim();
  $("order-id").value = id;
  if (push) {
    const url = new URL(window.location.href);
    url.searchParams.set("id", id);
    window.history.pushState({ id }, "", url);
  }
  if (!ID_RE.test(id)) {
    $("order").hidden = true;
    setStatus("That is not a valid order id: use 1 to 64 letters, digits, '_' or '-'.", "error");
    return;
  }
  setStatus("Loading…", "");
  try {
    const res = await fetch(base() + "orders/" + encodeURIComponent(id), {
      headers: { Accept: "application/json" },
      signal: lookup.signal,
    });
    if (stale()) return;
    if (res.status === 404) {
      $("order").hidden = true;
      setStatus("No order with id " + id + ".", "error");
      return;
    }
    if (!res.ok) {
      $("order").hidden = true;
      const body = await res.json().catch(() => ({}));
      if (stale()) return;
      setStatus(body.message || "The server answered " + res.status + ".", "error");
      return;
    }
    const order = parseExact(await res.text());
    if (stale()) return;
    render(order);
    setStatus("", "");
  } catch (e) {
    if (stale()) return;
    $("order").hidden = true;
    setStatus("The server cannot be reached.", "error");
  }
}

async function loadRecent() {
  try {
    const res = await fetch(base() + "orders", { headers: { Accept: "application/json" } });
    if (!res.ok) return;
    const body = await res.json();
    $("recent").replaceChildren(...body.orders.map((id) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.textContent = id;
      a.href = "?id=" + encodeURIComponent(id);
      a.addEventListener("click", (ev) => {
        ev.preventDefault();
        show(id, true);
      });
      li.append(a);
      return li;
    }));
  } catch (e) {
    // The list is a convenience; lookups still work without it.
  }
}

// The live status strip: this instance's numbers from GET status, every
// LIVE_EVERY ms. The ingest rate is the change in the ingested count
// between two answers, over the time between them.
const LIVE_EVERY = 2000;
const COUNT = new Intl.NumberFormat("en-US");
const RATE = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
const LIVE_FIELDS = ["orders_ingested", "dead_letters", "consumer_pending",
  "consumer_ack_pending", "cache_orders"];
let lastLive = null;

async function fetchLive() {
  const res = await fetch(base() + "status", { headers: { Accept: "application/json" } });
  if (!res.ok) throw new Error("status answered " + res.status);
  const s = await res.json();
  if (!LIVE_FIELDS.every((f) => Number.isSafeInteger(s[f]) && s[f] >= 0)) {
    throw new Error("status is not a set of counts");
  }
  return s;
}

async function loadLive() {
  let s;
  try {
    s = await fetchLive();
  } catch (e) {
    $("live").classList.add("stale");
    $("live-note").textContent = "Live status unavailable; retrying.";
    $("live-note").hidden = false;
    lastLive = null;
    return;
  }
  const at = performance.now();
  let rate = "–";
  // A count that went down is another instance's (or a restart's): no rate.
  if (lastLive && at > lastLive.at && s.orders_ingested >= lastLive.ingested) {
    rate = RATE.format((s.orders_ingested - lastLive.ingested) * 1000 / (at - lastLive.at));
  }
  lastLive = { at, ingested: s.orders_ingested };
  $("live").classList.remove("stale");
  $("live-note").hidden = true;
  $("live-rate").textContent = rate;
  $("live-lag").textContent = COUNT.format(s.consumer_pending + s.consumer_ack_pending);
  $("live-dead").textContent = COUNT.format(s.dead_letters);
  $("live-cached").textContent = COUNT.format(s.cache_orders);
  $("live-dead").parentElement.classList.toggle("warn", s.dead_letters > 0);
}

// Polls after each answer, so a slow server never has two polls at once.
async function pollLive() {
  await loadLive();
  setTimeout(pollLive, LIVE_EVERY);
}

document.addEventListener("DOMContentLoaded", () => {
  $("lookup").addEventListener("submit", (ev) => {
    ev.preventDefault();
    show($("order-id").value, true);
  });
  window.addEventListener("popstate", () => {
    const id = new URL(window.location.href).searchParams.get("id");
    if (id !== null) show(id, false);
  });
  const id = new URL(window.location.href).searchParams.get("id");
  if (id !== null) show(id, false);
  loadRecent();
  setInterval(loadRecent, 2000);
  pollLive();
});
