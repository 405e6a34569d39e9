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
// Every key of an order the page knows; any other is shown under "Other
// fields" (the service keeps fields it does not know, at every level).
const ORDER_FIELDS = [...HEADER_FIELDS, "delivery", "payment", "items"];

// The page may be mounted under a prefix: resolve API paths against it.
function base() {
  const p = window.location.pathname;
  return p.endsWith("/") ? p : p + "/";
}

function $(id) { return document.getElementById(id); }

// The access token, when the service asks for one (it answers 401). Kept
// for this tab only: sessionStorage is gone when the tab closes, and,
// unlike a cookie, is never sent by the browser on its own. It travels in
// the Authorization header, never in an address (which logs and the
// history keep).
const TOKEN_KEY = "order_cache.token";
// Where storage is disabled: in this page alone.
let pageToken = null;

function savedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch (e) {
    return pageToken;
  }
}

function saveToken(token) {
  pageToken = token;
  try {
    if (token === null) sessionStorage.removeItem(TOKEN_KEY);
    else sessionStorage.setItem(TOKEN_KEY, token);
  } catch (e) {
    // Kept in pageToken.
  }
}

// What to do again once a token is given: the requests a 401 stopped.
let retry = new Set();

// Shows the token form: the first time a route answers 401, and again when
// the token sent was refused (it is then forgotten).
function askToken(sent) {
  const refused = sent !== null;
  if (refused && savedToken() === sent) saveToken(null);
  if (!$("token").hidden && !refused) return;
  $("token-note").textContent = refused
    ? "That access token was refused. Enter a valid one."
    : "This service needs an access token to show orders.";
  $("token").hidden = false;
}

function waitingForToken() {
  return !$("token").hidden;
}

// GET an API path (relative to the page), with the token when there is one.
// On a 401 the token form is shown, and `again` runs once a token is given.
async function api(path, again, init = {}) {
  const sent = savedToken();
  const headers = { Accept: "application/json" };
  if (sent !== null) headers.Authorization = "Bearer " + sent;
  const res = await fetch(base() + path, { ...init, headers });
  if (res.status === 401) {
    retry.add(again);
    askToken(sent);
  }
  return res;
}

function useToken(ev) {
  ev.preventDefault();
  const token = $("token-input").value.trim();
  if (token === "") return;
  // A token is visible ASCII only (the service takes nothing else); a
  // character pasted with it (a zero-width space, a curly quote) would make
  // fetch throw before anything is sent, and no 401 would ever ask again.
  if (!/^[\x21-\x7e]+$/.test(token)) {
    $("token-note").textContent =
      "An access token has only letters, digits and ASCII punctuation: check for a stray character.";
    return;
  }
  saveToken(token);
  $("token-input").value = "";
  $("token").hidden = true;
  const again = retry;
  retry = new Set();
  for (const f of again) f();
}

// A JSON number as the text that was sent. A JavaScript number would round
// integers above 2^53 (an amount of 9223372036854775807 would read
// 9223372036854776000) and forget how the number was written (1e3, 1.0).
class JsonNumber {
  constructor(text) { this.text = text; }
  toString() { return this.text; }
}

const STRING_RE = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const WS_RE = /[ \t\n\r]*/y;

// JSON.parse, except that every number comes back as a JsonNumber and every
// object as a Map. A Map keeps the keys in the order they were sent (an
// object moves keys like "42" to the front) and holds any key as plain data,
// "__proto__" too. A string is JSON.parse's to unescape.
function parseExact(text) {
  let i = 0;
  const fail = () => { throw new SyntaxError("not JSON at offset " + i); };
  const match = (re) => {
    re.lastIndex = i;
    const m = re.exec(text);
    if (m === null) fail();
    i = re.lastIndex;
    return m[0];
  };
  const skip = () => match(WS_RE);
  const expect = (c) => {
    skip();
    if (text[i] !== c) fail();
    i += 1;
  };
  // Whether the next token is `c`, taking it if so.
  const next = (c) => {
    skip();
    if (text[i] !== c) return false;
    i += 1;
    return true;
  };
  const value = () => {
    skip();
    const c = text[i];
    if (c === "{") {
      i += 1;
      const map = new Map();
      if (next("}")) return map;
      do {
        skip();
        const key = JSON.parse(match(STRING_RE));
        expect(":");
        map.set(key, value());
      } while (next(","));
      expect("}");
      return map;
    }
    if (c === "[") {
      i += 1;
      const list = [];
      if (next("]")) return list;
      do {
        list.push(value());
      } while (next(","));
      expect("]");
      return list;
    }
    if (c === '"') return JSON.parse(match(STRING_RE));
    for (const [word, literal] of [["true", true], ["false", false], ["null", null]]) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return literal;
      }
    }
    return new JsonNumber(match(NUMBER_RE));
  };
  const result = value();
  skip();
  if (i !== text.length) fail();
  return result;
}

// A value from parseExact as compact JSON, each number as it was sent.
function jsonText(v) {
  if (v instanceof JsonNumber) return v.text;
  if (Array.isArray(v)) return "[" + v.map(jsonText).join(",") + "]";
  if (v instanceof Map) {
    return "{" + Array.from(v, ([k, x]) => JSON.stringify(k) + ":" + jsonText(x)).join(",") + "}";
  }
  return JSON.stringify(v);
}

function setStatus(text, kind) {
  const s = $("status");
  s.textContent = text;
  s.className = kind || "";
}

function field(name, text) {
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  dd.textContent = text;
  dd.dataset.field = name;
  return [dt, dd];
}

function fillList(dl, obj, fields) {
  dl.replaceChildren(...fields.flatMap((f) => field(f, String(obj.get(f)))));
}

// The fields of `obj` the page does not know, in the order they were sent.
function otherFields(obj, known) {
  return Array.from(obj).filter(([name]) => !known.includes(name));
}

// Fields the service kept without knowing them. A value that is not a
// string is shown as its JSON text, and marked so, so that the number 1e3
// and the text "1e3" can be told apart.
function fillOther(dl, fields) {
  dl.replaceChildren(...fields.flatMap(([name, value]) => {
    const [dt, dd] = field(name, typeof value === "string" ? value : jsonText(value));
    if (typeof value !== "string") dd.classList.add("json");
    return [dt, dd];
  }));
}

// One "Other fields" list: filled, and shown only when there are any.
function showOther(id, obj, known) {
  const fields = otherFields(obj, known);
  fillOther($(id + "-fields"), fields);
  $(id).hidden = fields.length === 0;
}

function render(order) {
  document.querySelector('[data-field="order_uid"]').textContent = order.get("order_uid");
  fillList($("order-fields"), order, HEADER_FIELDS.filter((f) => f !== "order_uid"));
  showOther("order-other", order, ORDER_FIELDS);
  fillList($("delivery-fields"), order.get("delivery"), DELIVERY_FIELDS);
  showOther("delivery-other", order.get("delivery"), DELIVERY_FIELDS);
  fillList($("payment-fields"), order.get("payment"), PAYMENT_FIELDS);
  showOther("payment-other", order.get("payment"), PAYMENT_FIELDS);
  const headRow = $("items").querySelector("thead tr");
  headRow.replaceChildren(...ITEM_FIELDS.map((f) => {
    const th = document.createElement("th");
    th.textContent = f;
    return th;
  }));
  $("items").querySelector("tbody").replaceChildren(...order.get("items").flatMap(itemRows));
  $("order").hidden = false;
}

// An item's row, and when it has other fields, a row under it that holds
// them across the whole width (as a column they would widen the table).
function itemRows(item) {
  const tr = document.createElement("tr");
  for (const f of ITEM_FIELDS) {
    const td = document.createElement("td");
    td.textContent = String(item.get(f));
    td.dataset.label = f;
    tr.append(td);
  }
  const fields = otherFields(item, ITEM_FIELDS);
  if (fields.length === 0) return [tr];
  tr.className = "has-other";
  const dl = document.createElement("dl");
  dl.className = "fields other-fields";
  fillOther(dl, fields);
  const td = document.createElement("td");
  td.colSpan = ITEM_FIELDS.length;
  td.dataset.label = "other fields";
  td.append(dl);
  const other = document.createElement("tr");
  other.className = "other";
  other.append(td);
  return [tr, other];
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
    const res = await api("orders/" + encodeURIComponent(id), () => show(id, false), {
      signal: lookup.signal,
    });
    if (stale()) return;
    if (res.status === 401) {
      $("order").hidden = true;
      setStatus("Enter the access token to see this order.", "error");
      return;
    }
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

let recentTimer = null;

async function loadRecent() {
  if (waitingForToken()) return;
  try {
    const res = await api("orders", loadRecent);
    // No listing on this service (RECENT_ORDERS=off): no list, no polling.
    if (res.status === 404) {
      clearInterval(recentTimer);
      $("recent-box").hidden = true;
      document.querySelector("main").classList.add("no-recent");
      return;
    }
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
  const res = await api("status", () => {});
  if (!res.ok) throw new Error("status answered " + res.status);
  const s = await res.json();
  if (!LIVE_FIELDS.every((f) => Number.isSafeInteger(s[f]) && s[f] >= 0)) {
    throw new Error("status is not a set of counts");
  }
  return s;
}

async function loadLive() {
  // The strip shows its last numbers until there is a token to ask with.
  if (waitingForToken()) return;
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
  $("token").addEventListener("submit", useToken);
  window.addEventListener("popstate", () => {
    const id = new URL(window.location.href).searchParams.get("id");
    if (id !== null) show(id, false);
  });
  const id = new URL(window.location.href).searchParams.get("id");
  if (id !== null) show(id, false);
  loadRecent();
  recentTimer = setInterval(loadRecent, 2000);
  pollLive();
});
