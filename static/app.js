// Order lookup page. Every value from an order is untrusted: it is only ever
// put into the page as text (textContent), never as HTML.
"use strict";

const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
// Each field the page knows, with the label a person reads; the JSON key
// stays in the label's tooltip. Order matters: it is the order shown.
const HEADER_FIELDS = ["order_uid", "date_created", "track_number", "customer_id",
  "delivery_service"];
// What only those who run the pipeline look at: shown last, under its own
// heading.
const TECH_FIELDS = ["entry", "locale", "internal_signature", "shardkey", "sm_id", "oof_shard"];
const DELIVERY_FIELDS = ["name", "phone", "email", "address", "city", "region", "zip"];
const PAYMENT_FIELDS = ["amount", "payment_dt", "goods_total", "delivery_cost", "custom_fee",
  "currency", "provider", "bank", "transaction", "request_id"];
const ITEM_FIELDS = ["name", "brand", "size", "price", "sale", "total_price", "status", "nm_id",
  "chrt_id", "rid", "track_number"];
const LABELS = {
  order: {
    order_uid: "Order id", date_created: "Created", track_number: "Track number",
    customer_id: "Customer", delivery_service: "Delivery service", entry: "Entry point",
    locale: "Locale", internal_signature: "Internal signature", shardkey: "Shard key",
    sm_id: "SM id", oof_shard: "OOF shard",
  },
  delivery: {
    name: "Name", phone: "Phone", email: "Email", address: "Address", city: "City",
    region: "Region", zip: "Postcode",
  },
  payment: {
    amount: "Amount paid", payment_dt: "Paid at", goods_total: "Goods", delivery_cost: "Delivery",
    custom_fee: "Customs fee", currency: "Currency", provider: "Provider", bank: "Bank",
    transaction: "Transaction", request_id: "Request id",
  },
  item: {
    name: "Item", brand: "Brand", size: "Size", price: "Price", sale: "Sale",
    total_price: "Total", status: "Status", nm_id: "Article", chrt_id: "Chart id", rid: "Rid",
    track_number: "Track number",
  },
};
// An item's identifiers and codes, set quieter than its name and prices.
const ITEM_CODES = new Set(["status", "nm_id", "chrt_id", "rid", "track_number"]);
// The fields that hold money, in the payment's currency.
const AMOUNTS = new Set(["amount", "goods_total", "delivery_cost", "custom_fee", "price",
  "total_price"]);
// Every key of an order the page knows; any other is shown under "Other
// fields" (the service keeps fields it does not know, at every level).
const ORDER_FIELDS = [...HEADER_FIELDS, ...TECH_FIELDS, "delivery", "payment", "items"];

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

// Numbers in the page's language, which is English; dates and times in the
// reader's own locale and time zone.
const NUMBER_LOCALE = "en-US";
const DATE_TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "long" });
const TIME_ONLY = new Intl.DateTimeFormat(undefined, { timeStyle: "short" });
const DATE_SHORT = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

// An amount as "1,817 USD": every digit kept (a BigInt, so i64::MAX reads
// exactly), grouped, and the currency as the order names it. Not the
// currency's symbol: the service does not check currency codes, and a
// symbol would hide one it does not know.
function money(value, currency) {
  const text = String(value);
  const n = /^-?[0-9]+$/.test(text) ? BigInt(text).toLocaleString(NUMBER_LOCALE) : text;
  return currency === "" ? n : n + " " + currency;
}

const RFC3339_RE = /^([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2}):([0-9]{2})(?:\.([0-9]+))?([Zz]|[+-][0-9]{2}:[0-9]{2})$/;

// The instant an RFC 3339 text names, or null. Date.parse takes neither a
// space for the T, a leap second, nor more than 3 fractional digits: the
// text is brought to the form it takes (a leap second as the last
// millisecond of its minute, as the service stores it).
function rfc3339(text) {
  const m = RFC3339_RE.exec(text);
  if (m === null) return null;
  let [, day, hm, sec, frac = "", zone] = m;
  let ms = (frac + "000").slice(0, 3);
  if (sec === "60") [sec, ms] = ["59", "999"];
  const d = new Date(`${day}T${hm}:${sec}.${ms}${zone.toUpperCase()}`);
  return Number.isNaN(d.getTime()) ? null : d;
}

// Unix seconds (as sent) as a Date, or null outside what a Date holds.
function unixSeconds(value) {
  const n = Number(String(value));
  if (!Number.isSafeInteger(n)) return null;
  const d = new Date(n * 1000);
  return Number.isNaN(d.getTime()) ? null : d;
}

// A readable time, and under it, in small print, the value as sent. A
// value that names no time the page can read is shown as sent alone.
function timeInto(el, date, raw) {
  if (date === null) {
    el.textContent = raw;
    return;
  }
  const time = document.createElement("time");
  time.dateTime = date.toISOString();
  time.textContent = DATE_TIME.format(date);
  const small = document.createElement("small");
  small.className = "raw";
  small.textContent = raw;
  el.replaceChildren(time, small);
}

// A known field's value into `el`, as a person reads it; the JSON key is
// on `el` (data-field) for whoever looks for it.
function valueInto(el, key, value, currency) {
  const raw = String(value);
  if (key === "date_created") timeInto(el, rfc3339(raw), raw);
  else if (key === "payment_dt") timeInto(el, unixSeconds(value), raw);
  else if (AMOUNTS.has(key)) {
    el.textContent = money(value, currency);
    if (el.tagName === "TD") el.classList.add("num");
  } else if (key === "sale") el.textContent = raw + "%";
  else el.textContent = raw;
}

function field(name, text) {
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  dd.textContent = text;
  dd.dataset.field = name;
  return [dt, dd];
}

// A known field: its label, with the JSON key as a tooltip, and its value.
function knownField(labels, key, value, currency) {
  const dt = document.createElement("dt");
  dt.textContent = labels[key];
  dt.title = key;
  const dd = document.createElement("dd");
  dd.dataset.field = key;
  valueInto(dd, key, value, currency);
  return [dt, dd];
}

function fillList(dl, obj, fields, labels, currency) {
  dl.replaceChildren(...fields.flatMap((f) => knownField(labels, f, obj.get(f), currency)));
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

// "1 item", "3 items".
function itemCount(n) {
  return COUNT.format(n) + (n === 1 ? " item" : " items");
}

// The sum of the items' totals, or null when one is not an integer.
function itemsTotal(items) {
  let sum = 0n;
  for (const item of items) {
    const t = String(item.get("total_price"));
    if (!/^-?[0-9]+$/.test(t)) return null;
    sum += BigInt(t);
  }
  return sum;
}

function render(order) {
  const payment = order.get("payment");
  const currency = String(payment.get("currency"));
  const items = order.get("items");
  document.querySelector('[data-field="order_uid"]').textContent = order.get("order_uid");
  // The line a person reads first: when, how much, how many.
  const created = rfc3339(String(order.get("date_created")));
  $("order-summary").textContent = [
    created === null ? String(order.get("date_created")) : DATE_SHORT.format(created),
    money(payment.get("amount"), currency),
    itemCount(items.length),
  ].join(" · ");
  fillList($("order-fields"), order, HEADER_FIELDS.filter((f) => f !== "order_uid"), LABELS.order);
  fillList($("order-tech-fields"), order, TECH_FIELDS, LABELS.order);
  showOther("order-other", order, ORDER_FIELDS);
  fillList($("delivery-fields"), order.get("delivery"), DELIVERY_FIELDS, LABELS.delivery);
  showOther("delivery-other", order.get("delivery"), DELIVERY_FIELDS);
  fillList($("payment-fields"), payment, PAYMENT_FIELDS, LABELS.payment, currency);
  showOther("payment-other", payment, PAYMENT_FIELDS);
  const headRow = $("items").querySelector("thead tr");
  headRow.replaceChildren(...ITEM_FIELDS.map((f) => {
    const th = document.createElement("th");
    th.textContent = LABELS.item[f];
    th.title = f;
    if (AMOUNTS.has(f) || f === "sale") th.className = "num";
    return th;
  }));
  $("items").querySelector("tbody").replaceChildren(...items.flatMap((item) => itemRows(item, currency)));
  const total = itemsTotal(items);
  const foot = $("items").querySelector("tfoot");
  foot.hidden = total === null;
  if (total !== null) {
    const label = document.createElement("th");
    label.scope = "row";
    label.colSpan = ITEM_FIELDS.indexOf("total_price");
    label.textContent = "Total of " + itemCount(items.length);
    const sum = document.createElement("td");
    sum.className = "num";
    sum.id = "items-total";
    sum.dataset.label = "Total of " + itemCount(items.length);
    sum.textContent = money(total, currency);
    const rest = document.createElement("td");
    rest.colSpan = ITEM_FIELDS.length - ITEM_FIELDS.indexOf("total_price") - 1;
    rest.className = "filler";
    const tr = document.createElement("tr");
    tr.append(label, sum, rest);
    foot.replaceChildren(tr);
  }
  $("order").hidden = false;
}

// An item's row, and when it has other fields, a row under it that holds
// them across the whole width (as a column they would widen the table).
function itemRows(item, currency) {
  const tr = document.createElement("tr");
  for (const f of ITEM_FIELDS) {
    const td = document.createElement("td");
    valueInto(td, f, item.get(f), currency);
    td.dataset.field = f;
    td.dataset.label = LABELS.item[f];
    if (f === "sale") td.classList.add("num");
    if (ITEM_CODES.has(f)) td.classList.add("code");
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
  td.dataset.label = "Other fields";
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

// When a recent order was created, short: the time alone today, with the
// date otherwise.
function shortTime(date) {
  const today = new Date().toDateString() === date.toDateString();
  return (today ? TIME_ONLY : DATE_SHORT).format(date);
}

// One entry of the recent list: the id whole (one line, cut with an
// ellipsis only when longer than the list is wide, the whole id in the
// tooltip), and under it when, how many items and how much.
function recentEntry(entry) {
  const id = String(entry.get("order_uid"));
  const a = document.createElement("a");
  a.href = "?id=" + encodeURIComponent(id);
  a.addEventListener("click", (ev) => {
    ev.preventDefault();
    show(id, true);
  });
  const idText = document.createElement("span");
  idText.className = "id";
  idText.textContent = id;
  a.title = id;
  a.append(idText);
  if (entry.has("date_created")) {
    const meta = document.createElement("span");
    meta.className = "meta";
    const raw = String(entry.get("date_created"));
    const created = rfc3339(raw);
    const when = document.createElement("time");
    if (created !== null) {
      when.dateTime = created.toISOString();
      when.title = DATE_TIME.format(created) + " (" + raw + ")";
      when.textContent = shortTime(created);
    } else {
      when.textContent = raw;
    }
    // Each part kept whole when the line wraps.
    const part = (text) => {
      const span = document.createElement("span");
      span.textContent = text;
      return span;
    };
    meta.append(when, " · ", part(itemCount(Number(String(entry.get("item_count"))))), " · ",
      part(money(entry.get("amount"), String(entry.get("currency")))));
    a.append(meta);
  }
  const li = document.createElement("li");
  li.append(a);
  return li;
}

// The list's entries: `recent` (ids with summaries) from a service that
// has it, else the bare ids of `orders`.
function recentEntries(body) {
  const recent = body.get("recent");
  if (Array.isArray(recent) && recent.every((e) => e instanceof Map && e.has("order_uid"))) {
    return recent;
  }
  const orders = body.get("orders");
  return Array.isArray(orders) ? orders.map((id) => new Map([["order_uid", id]])) : [];
}

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
    // parseExact: an amount above 2^53 keeps every digit.
    const body = parseExact(await res.text());
    if (!(body instanceof Map)) return;
    const entries = recentEntries(body);
    $("recent").replaceChildren(...entries.map(recentEntry));
    $("recent-empty").hidden = entries.length > 0;
  } catch (e) {
    // The list is a convenience; lookups still work without it.
  }
}

// The live status strip: this instance's numbers from GET status, every
// LIVE_EVERY ms. The ingest rate is the change in the ingested count
// between two answers, over the time between them; the first answer has
// no rate yet, so the second is asked for sooner (FIRST_RATE_AFTER ms).
const LIVE_EVERY = 2000;
const FIRST_RATE_AFTER = 500;
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

// The chart beside the rate: one bar per interval between two answers,
// over the last CHART_WINDOW ms, as tall as its rate against the highest
// in view. Drawn with SVG elements made one by one (no markup parsed).
const CHART_WINDOW = 5 * 60 * 1000;
const CHART_MIN_INTERVAL = 1000;
const CHART_W = 300;
const CHART_H = 40;
const SVG_NS = "http://www.w3.org/2000/svg";
let rates = [];

function drawChart(now) {
  rates = rates.filter((r) => r.to > now - CHART_WINDOW);
  const peak = Math.max(0, ...rates.map((r) => r.rate));
  const x = (t) => Math.max(0, (t - (now - CHART_WINDOW)) * CHART_W / CHART_WINDOW);
  const bars = rates.map((r) => {
    const bar = document.createElementNS(SVG_NS, "rect");
    const h = peak > 0 ? r.rate * CHART_H / peak : 0;
    const left = x(r.from);
    bar.setAttribute("x", left.toFixed(2));
    bar.setAttribute("width", Math.max(0.5, x(r.to) - left).toFixed(2));
    bar.setAttribute("y", (CHART_H - h).toFixed(2));
    bar.setAttribute("height", h.toFixed(2));
    bar.setAttribute("data-rate", String(r.rate));
    return bar;
  });
  $("live-bars").replaceChildren(...bars);
  const minutes = Math.round(CHART_WINDOW / 60000);
  const text = rates.length === 0
    ? "No rate yet."
    : `Last ${minutes} min: peak ${RATE.format(peak)} / s`;
  $("live-chart-note").textContent = text;
  $("live-chart-title").textContent = "Orders ingested per second. " + text;
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
  let rate = "measuring…";
  // A count that went down is another instance's (or a restart's): no rate.
  if (lastLive && at > lastLive.at && s.orders_ingested >= lastLive.ingested) {
    const perSecond = (s.orders_ingested - lastLive.ingested) * 1000 / (at - lastLive.at);
    rate = RATE.format(perSecond);
    // The first, short interval is shown as a number only: at a slow
    // pace one order in half a second reads as a peak the chart would
    // scale every later bar against.
    if (at - lastLive.at >= CHART_MIN_INTERVAL) {
      rates.push({ from: lastLive.at, to: at, rate: perSecond });
    }
  }
  lastLive = { at, ingested: s.orders_ingested };
  drawChart(at);
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
  const first = lastLive === null;
  await loadLive();
  setTimeout(pollLive, first && lastLive !== null ? FIRST_RATE_AFTER : LIVE_EVERY);
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
