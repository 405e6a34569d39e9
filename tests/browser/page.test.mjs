// Drives the lookup page of a running order_cache server in headless
// Chromium, as a person would: typing an id, following a link, clicking a
// recent order, on a desktop and on a phone-width screen. Run by
// tests/api/browser.rs, which starts the server and publishes the orders.
//
// Environment:
//   BASE_URL        the page, ending in "/" (http://127.0.0.1:PORT/)
//   ORDER_ID        an order the server holds
//   HOSTILE_ID      an order whose text fields hold HTML and script
//   BIG_ID          an order holding the integers in BIG below
//   REAL_ID         an order as a shop would send it (three items, RUB),
//                   shown in the screenshots
//   OTHER_ID        an order with fields the page does not know at every
//                   level, some written as in OTHER_EXACT below, and a date
//                   with an offset and nanoseconds (OTHER_DATE)
//   SCREENSHOT_DIR  where the screenshots go (the repository's docs/)
//   LIVE_SIGNAL     a file to create when the server should start publishing
//                   orders (browser.rs then publishes LIVE_COUNT, one every
//                   100 ms), for the live status strip's check
//   LIVE_COUNT      how many
//   TOKEN_BASE_URL  the page of a second server on the same database, which
//                   takes the access token TOKEN and lists no recent orders
//   TOKEN           its token
//   CHROMIUM        the browser (default /usr/bin/chromium)
//
// Exits 0 when every check passes, 1 otherwise, naming each failure.

import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} must be set`);
  return v;
};
const BASE_URL = env("BASE_URL");
const ORDER_ID = env("ORDER_ID");
const HOSTILE_ID = env("HOSTILE_ID");
const BIG_ID = env("BIG_ID");
const OTHER_ID = env("OTHER_ID");
const REAL_ID = env("REAL_ID");
const SCREENSHOT_DIR = env("SCREENSHOT_DIR");
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const LIVE_SIGNAL = env("LIVE_SIGNAL");
const LIVE_COUNT = Number(env("LIVE_COUNT"));
const TOKEN_BASE_URL = env("TOKEN_BASE_URL");
const TOKEN = env("TOKEN");

// How often the page polls /status (app.js's LIVE_EVERY).
const LIVE_EVERY_MS = 2000;

// The page shows times in the reader's locale and time zone: fixed here, so
// that the checks (and the screenshots) do not depend on the machine's.
const PLACE = { locale: "en-US", timezoneId: "Europe/Berlin" };
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, ...PLACE };
const DESKTOP = { viewport: { width: 1280, height: 900 }, ...PLACE };

// The same-origin requests the page is allowed to make; anything else (an
// <img src=x> from an order, say) means order data was treated as HTML.
function expectedRequest(url, base = BASE_URL) {
  const u = new URL(url);
  if (u.origin !== new URL(base).origin) return false;
  const path = u.pathname.slice(new URL(base).pathname.length - 1);
  return ["/", "/app.js", "/style.css", "/favicon.svg", "/orders", "/status"].includes(path)
    || /^\/orders\/[^/]+$/.test(path);
}

// The fields the page lists by name, as the model has them (openapi.yaml);
// any other field of an order is shown under "Other fields" of its parent.
const KNOWN = {
  order: ["order_uid", "track_number", "entry", "delivery", "payment", "items", "locale",
    "internal_signature", "customer_id", "delivery_service", "shardkey", "sm_id", "date_created",
    "oof_shard"],
  delivery: ["name", "phone", "zip", "city", "address", "region", "email"],
  payment: ["transaction", "request_id", "currency", "provider", "amount", "payment_dt", "bank",
    "delivery_cost", "goods_total", "custom_fee"],
  item: ["chrt_id", "track_number", "price", "rid", "name", "sale", "size", "total_price", "nm_id",
    "brand", "status"],
};

// How the page shows a known field's value (`currency` is the payment's):
// amounts with every digit, grouped, and the currency; a sale as a
// percentage; anything else as sent. The two times are checked apart (see
// expectTime).
const AMOUNTS = ["amount", "goods_total", "delivery_cost", "custom_fee", "price", "total_price"];
function shown(key, value, currency) {
  const text = String(value);
  if (AMOUNTS.includes(key)) {
    const n = BigInt(text).toLocaleString("en-US");
    return currency === "" ? n : `${n} ${currency}`;
  }
  if (key === "sale") return `${text}%`;
  return text;
}

// The instant an RFC 3339 text names, to the millisecond (a leap second as
// the last millisecond of its minute), as an ISO string; null for none.
function instantOf(text) {
  const m = /^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/.exec(text);
  if (!m) return null;
  let [, day, hm, sec, frac = "", zone] = m;
  let ms = frac.padEnd(3, "0").slice(0, 3);
  if (sec === "60") [sec, ms] = ["59", "999"];
  const d = new Date(`${day}T${hm}:${sec}.${ms}${zone.toUpperCase()}`);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

async function orderJson(id, base = BASE_URL, headers = {}) {
  const res = await fetch(new URL(`orders/${encodeURIComponent(id)}`, base), { headers });
  assert.equal(res.status, 200, `the API serves order ${id}`);
  return res.json();
}

// The integers browser.rs put into the BIG_ID order, above 2^53 where a
// JavaScript number starts rounding them.
const BIG = {
  "payment.amount": "9223372036854775807",
  "payment.payment_dt": "9007199254740993",
  "payment.goods_total": "9007199254740993",
  "items.0.chrt_id": "9007199254740993",
  "items.0.nm_id": "9223372036854775807",
};

// The BIG_ID order with each of its big integers as the exact text the API
// sends (JSON.parse, here as in the page, rounds them).
async function bigOrder() {
  const res = await fetch(new URL(`orders/${encodeURIComponent(BIG_ID)}`, BASE_URL));
  assert.equal(res.status, 200, `the API serves order ${BIG_ID}`);
  const text = await res.text();
  const order = JSON.parse(text);
  for (const [path, exact] of Object.entries(BIG)) {
    const keys = path.split(".");
    const last = keys.pop();
    const parent = keys.reduce((o, k) => o[k], order);
    assert.ok(text.includes(`"${last}":${exact}`), `the API sends ${path} as ${exact}`);
    assert.notEqual(String(parent[last]), exact, `a JavaScript number cannot hold ${path}`);
    parent[last] = exact;
  }
  return order;
}

// A value the API sends as JSON text that JSON.parse cannot give back (1e3
// reads 1000, 1.0 reads 1): the text the page must show for it.
class Exact {
  constructor(text) { this.text = text; }
}

// What browser.rs put into the OTHER_ID order beside the model's fields
// (it holds these and more): each path, and the JSON text the API sends and
// the page shows for it.
const OTHER_DATE = "2026-12-01T23:39:28.708645252+03:00";
const OTHER_EXACT = [
  [["weight"], "1e3"],
  [["meta"], '{"source":"<svg onload=\\"window.__pwned = 7\\">","tags":["a",1.0,null],"deep":{"n":-2.5E-3}}'],
  [["payment", "installments"], "[1e3,2]"],
  [["items", 0, "dims"], '{"w":1.0,"h":2e-1}'],
];

// The OTHER_ID order with each value in OTHER_EXACT as the exact text the
// API sends.
async function otherOrder() {
  const res = await fetch(new URL(`orders/${encodeURIComponent(OTHER_ID)}`, BASE_URL));
  assert.equal(res.status, 200, `the API serves order ${OTHER_ID}`);
  const text = await res.text();
  const order = JSON.parse(text);
  assert.equal(order.date_created, OTHER_DATE, "the API sends the date as it was sent");
  for (const [path, exact] of OTHER_EXACT) {
    const keys = [...path];
    const last = keys.pop();
    const parent = keys.reduce((o, k) => o[k], order);
    assert.ok(text.includes(`${JSON.stringify(last)}:${exact}`), `the API sends ${path.join(".")} as ${exact}`);
    parent[last] = new Exact(exact);
  }
  return order;
}

// Runs in the page before its own script: notes when each fetch settles
// and when a body starts and finishes being read, so that a check can wait
// until the page has had an answer, rather than guess how long that takes.
// The notes are made before the page's own code sees each result.
function recordAnswers() {
  const notes = (window.__answers = []);
  const fetch = window.fetch;
  window.fetch = function (input, init) {
    const url = String(input);
    const answer = fetch.call(this, input, init);
    const note = () => notes.push(["settled", url]);
    answer.then(note, note);
    return answer;
  };
  for (const method of ["json", "text", "arrayBuffer", "blob"]) {
    const read = Response.prototype[method];
    Response.prototype[method] = function () {
      const url = this.url;
      notes.push(["reading", url]);
      const body = read.call(this);
      const note = () => notes.push(["read", url]);
      body.then(note, note);
      return body;
    };
  }
}

// Opens a page that records everything a check must not see: script
// errors, dialogs (alert/confirm), unexpected requests, error answers,
// console errors. `close({ allow })` takes patterns of the ones a check
// expects (the 404 of an unknown id, say).
async function open(browser, device, base = BASE_URL) {
  const context = await browser.newContext(device);
  const page = await context.newPage();
  watch(page, base);
  const close = async ({ allow = [] } = {}) => {
    await context.close();
    const real = page.trouble.filter((t) => !allow.some((pattern) => pattern.test(t)));
    assert.deepEqual(real, [], "nothing unexpected happened in the page");
  };
  return { page, context, close };
}

// Notes in page.trouble what a check must not see (see open).
function watch(page, base) {
  const trouble = (page.trouble = []);
  page.on("pageerror", (e) => trouble.push(`script error: ${e.message}`));
  page.on("dialog", async (d) => {
    trouble.push(`dialog opened: ${d.message()}`);
    await d.dismiss();
  });
  page.on("request", (r) => {
    if (!expectedRequest(r.url(), base)) trouble.push(`unexpected request: ${r.method()} ${r.url()}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400) trouble.push(`HTTP ${r.status()} ${r.url()}`);
  });
  page.on("console", (m) => {
    if (m.type() === "error") trouble.push(`console error: ${m.text()} (${m.location().url})`);
  });
}

// The fields of `obj` the page does not know, each as [name, the text the
// page shows for it, whether that text is JSON]: a string as itself, any
// other value as its JSON text.
function otherFields(obj, known) {
  return Object.entries(obj).filter(([k]) => !known.includes(k)).map(([k, v]) => {
    if (v instanceof Exact) return [k, v.text, true];
    return typeof v === "string" ? [k, v, false] : [k, JSON.stringify(v), true];
  });
}

// An "Other fields" list on the page (none: no fields), as otherFields
// gives it, and whether each name and value is visible.
async function shownOther(dl) {
  if (await dl.count() === 0) return [];
  return dl.evaluate((e) => {
    const children = [...e.children];
    const out = [];
    for (let i = 0; i < children.length; i += 2) {
      const [dt, dd] = [children[i], children[i + 1]];
      if (dt.tagName !== "DT" || dd?.tagName !== "DD") throw new Error("not pairs of dt and dd");
      const shows = dt.checkVisibility() && dd.checkVisibility();
      out.push([dt.textContent, dd.textContent, dd.classList.contains("json"), shows]);
    }
    return out;
  });
}

// Every field of the order is on the page, as exactly the text the API
// holds, and visible: the model's fields by name, any other under "Other
// fields" of its parent, in the order the API sent them. Walks the JSON,
// not the page, so a field the page forgot fails the check.
async function assertShowsOrder(page, order) {
  await page.locator("#order").waitFor({ state: "visible" });
  const heading = page.locator('#order h2 [data-field="order_uid"]');
  assert.equal(await heading.textContent(), order.order_uid);
  let checked = 0;
  const currency = String(order.payment.currency);
  // A known field: shown as a person reads it (see shown), under a label
  // that is not its JSON key, the key in the label's tooltip.
  const expectText = async (locator, key, value, where) => {
    assert.equal(await locator.count(), 1, `${where} is on the page once`);
    if (key === "date_created" || key === "payment_dt") await expectTime(locator, key, value, where);
    else assert.equal(await locator.textContent(), shown(key, value, currency), `${where} reads as the order's value`);
    assert.ok(await locator.isVisible(), `${where} is visible`);
    const label = await locator.evaluate((e) => {
      const l = e.tagName === "DD" ? e.previousElementSibling
        : e.closest("table").querySelector("thead").rows[0].cells[e.cellIndex];
      return { text: l.textContent, title: l.title };
    });
    assert.equal(label.title, key, `${where}: the label's tooltip names the JSON key`);
    assert.ok(label.text !== "" && !label.text.includes("_"), `${where}: a label for people (${label.text})`);
    checked += 1;
  };
  // A time: readable, in the reader's zone, and the value as sent in small
  // print under it; a value that names no time the page can read, as sent.
  const expectTime = async (locator, key, value, where) => {
    const raw = String(value);
    const seconds = Number(raw);
    const instant = key === "date_created" ? instantOf(raw)
      : Number.isSafeInteger(seconds) && Math.abs(seconds) <= 8.64e12 ? new Date(seconds * 1000).toISOString() : null;
    if (instant === null) {
      assert.equal(await locator.textContent(), raw, `${where}: not a time, shown as sent`);
      return;
    }
    const time = locator.locator("time");
    assert.equal(await time.getAttribute("datetime"), instant, `${where}: the time it names`);
    const readable = await time.textContent();
    const want = await locator.page().evaluate((iso) => new Intl.DateTimeFormat(undefined,
      { dateStyle: "medium", timeStyle: "long" }).format(new Date(iso)), instant);
    assert.equal(readable, want, `${where}: a readable local time`);
    assert.equal(await locator.locator("small.raw").textContent(), raw, `${where}: the value as sent, in small print`);
    assert.ok(await locator.locator("small.raw").isVisible(), `${where}: the value as sent is visible`);
  };
  // `box` holds the list, and shows only when the list has something in it.
  const expectOther = async (box, obj, known, where) => {
    const want = otherFields(obj, known).map((f) => [...f, true]);
    assert.deepEqual(await shownOther(box.locator("dl")), want, `${where}: the other fields, as sent, and visible`);
    assert.equal(await box.isVisible(), want.length > 0, `${where}: "Other fields" shows when there are any`);
    checked += want.length;
  };
  for (const key of KNOWN.order) {
    if (key === "order_uid" || key === "delivery" || key === "payment" || key === "items") continue;
    await expectText(page.locator(`#order :is(#order-fields, #order-tech-fields) > dd[data-field="${key}"]`), key, order[key], key);
  }
  await expectOther(page.locator("#order-other"), order, KNOWN.order, "order");
  for (const part of ["delivery", "payment"]) {
    for (const k of KNOWN[part]) {
      await expectText(page.locator(`#${part}-fields dd[data-field="${k}"]`), k, order[part][k], `${part}.${k}`);
    }
    await expectOther(page.locator(`#${part}-other`), order[part], KNOWN[part], part);
  }
  // One row per item, and under an item with other fields, a row of them.
  const rows = page.locator("#items tbody tr:not(.other)");
  assert.equal(await rows.count(), order.items.length, "one row per item");
  const withOther = order.items.filter((item) => otherFields(item, KNOWN.item).length > 0);
  assert.equal(await page.locator("#items tbody tr.other").count(), withOther.length, "a row of other fields per item with any");
  for (const [i, item] of order.items.entries()) {
    for (const k of KNOWN.item) {
      await expectText(rows.nth(i).locator(`td[data-field="${k}"]`), k, item[k], `items[${i}].${k}`);
    }
    const under = rows.nth(i).locator("xpath=following-sibling::tr[1][@class='other']");
    await expectOther(under, item, KNOWN.item, `items[${i}]`);
  }
  // Under the items, what they come to.
  const total = order.items.reduce((sum, item) => sum + BigInt(String(item.total_price)), 0n);
  assert.equal(await page.locator("#items-total").textContent(), shown("total_price", total, currency), "the items' total");
  assert.ok(await page.locator("#items-total").isVisible(), "the items' total is visible");
  return checked;
}

// Whether anything in the order was run or made into an element, or
// changed every object (a field named "__proto__").
async function effects(page) {
  await page.waitForTimeout(0);
  return page.evaluate(() => ({
    pwned: window.__pwned ?? null,
    elements: document.querySelectorAll("#order img, #order script, #order svg, #order iframe, #order b").length,
    polluted: ({}).polluted ?? null,
  }));
}

// The other field `name` in the list `box`, as shown: its text, and
// whether it is marked as JSON. Null when it is not there.
async function otherField(page, box, name) {
  return page.locator(box).evaluate((list, name) => {
    const dt = [...list.querySelectorAll("dt")].find((d) => d.textContent === name);
    const dd = dt?.nextElementSibling;
    return dd ? { text: dd.textContent, json: dd.classList.contains("json") } : null;
  }, name);
}

async function statusText(page) {
  const status = page.locator("#status");
  await page.waitForFunction(() => {
    const s = document.getElementById("status").textContent;
    return s !== "" && s !== "Loading…";
  });
  return status.textContent();
}

const checks = [];
const check = (name, fn) => checks.push({ name, fn });

check("the page is sent with a CSP that forbids inline script, and nosniff", async (browser) => {
  const { page, close } = await open(browser, DESKTOP);
  const res = await page.goto(BASE_URL);
  const headers = res.headers();
  const csp = headers["content-security-policy"] ?? "";
  assert.match(csp, /script-src 'self'(;|$)/, `CSP allows only the page's own script: ${csp}`);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(headers["x-content-type-options"], "nosniff");
  // The policy is enforced: an inline script added to the page does not run.
  const ran = await page.evaluate(async () => {
    const violation = new Promise((resolve) => {
      document.addEventListener("securitypolicyviolation", (e) => resolve(e.violatedDirective), { once: true });
    });
    const s = document.createElement("script");
    s.textContent = "window.__inlineRan = true";
    document.body.append(s);
    return { ran: window.__inlineRan === true, violated: await violation };
  });
  assert.equal(ran.ran, false, "inline script was blocked");
  assert.match(ran.violated, /^script-src/);
  await close({ allow: [/^console error: .*Content Security Policy/] });
});

check("typing an id and pressing Show displays every field", async (browser) => {
  const order = await orderJson(ORDER_ID);
  const { page, close } = await open(browser, DESKTOP);
  await page.goto(BASE_URL);
  await page.getByLabel("Order id").fill(ORDER_ID);
  await page.getByRole("button", { name: "Show" }).click();
  const n = await assertShowsOrder(page, order);
  assert.ok(n >= 30, `checked ${n} fields`);
  assert.equal(new URL(page.url()).searchParams.get("id"), ORDER_ID, "the address links to the order");
  const wrap = await page.locator(".table-wrap").evaluate((e) => [e.scrollWidth, e.clientWidth]);
  assert.ok(wrap[0] <= wrap[1], `the items table fits a desktop window without scrolling (${wrap})`);
  await close();
});

check("a deep link /?id= opens the order", async (browser) => {
  const order = await orderJson(ORDER_ID);
  const { page, close } = await open(browser, DESKTOP);
  await page.goto(`${BASE_URL}?id=${encodeURIComponent(ORDER_ID)}`);
  await assertShowsOrder(page, order);
  assert.equal(await page.getByLabel("Order id").inputValue(), ORDER_ID);
  await close();
});

check("an unknown id gets a friendly message", async (browser) => {
  const { page, close } = await open(browser, DESKTOP);
  await page.goto(BASE_URL);
  await page.getByLabel("Order id").fill("no-such-order-42");
  await page.getByLabel("Order id").press("Enter");
  assert.equal(await statusText(page), "No order with id no-such-order-42.");
  assert.equal(await page.locator("#order").isVisible(), false);
  // The API answered 404, which the browser also logs as a console error.
  const notFound = /\/orders\/no-such-order-42\b/;
  await close({ allow: [
    new RegExp(`^HTTP 404 .*${notFound.source}`),
    new RegExp(`^console error: .*404.*${notFound.source}`),
  ] });
});

check("a malformed id gets a friendly message, typed or linked", async (browser) => {
  const { page, close } = await open(browser, DESKTOP);
  await page.goto(BASE_URL);
  await page.getByLabel("Order id").fill("not an id!");
  await page.getByRole("button", { name: "Show" }).click();
  assert.match(await statusText(page), /^That is not a valid order id/);
  assert.equal(await page.locator("#order").isVisible(), false);
  await page.goto(`${BASE_URL}?id=${encodeURIComponent("<img src=x onerror=alert(1)>")}`);
  assert.match(await statusText(page), /^That is not a valid order id/);
  assert.equal(await page.locator("img").count(), 0);
  await close();
});

check("clicking a recent order opens it", async (browser) => {
  const order = await orderJson(ORDER_ID);
  const { page, close } = await open(browser, DESKTOP);
  await page.goto(BASE_URL);
  const link = page.locator("#recent a", { hasText: ORDER_ID });
  await link.waitFor();
  await link.click();
  await assertShowsOrder(page, order);
  assert.equal(new URL(page.url()).searchParams.get("id"), ORDER_ID);
  await close();
});

check("an order holding HTML and script is shown as text and runs nothing", async (browser) => {
  const order = await orderJson(HOSTILE_ID);
  assert.match(order.delivery.name, /<script>/, "the test order does hold markup");
  const { page, close } = await open(browser, DESKTOP);
  await page.goto(`${BASE_URL}?id=${encodeURIComponent(HOSTILE_ID)}`);
  await assertShowsOrder(page, order);
  assert.deepEqual(await effects(page), { pwned: null, elements: 0, polluted: null });
  await close();
});

check("integers above 2^53 are shown exactly as sent", async (browser) => {
  const order = await bigOrder();
  const { page, close } = await open(browser, DESKTOP);
  await page.goto(`${BASE_URL}?id=${encodeURIComponent(BIG_ID)}`);
  await assertShowsOrder(page, order);
  assert.equal(
    await page.locator('#payment-fields dd[data-field="amount"]').textContent(),
    "9,223,372,036,854,775,807 USD",
  );
  // Beyond any date: no time, the number as sent.
  assert.equal(await page.locator('#payment-fields dd[data-field="payment_dt"]').textContent(), "9007199254740993");
  assert.equal(await page.locator("#items-total").textContent(), "317 USD");
  await close();
});

check("fields the service does not know are shown as text under their parent, and the date as sent", async (browser) => {
  const order = await otherOrder();
  assert.ok(Object.keys(order).some((k) => k.includes("<img")), "the test order has a field named in markup");
  assert.ok(Object.hasOwn(order, "__proto__"), "and one named __proto__");
  const { page, close } = await open(browser, DESKTOP);
  await page.goto(`${BASE_URL}?id=${encodeURIComponent(OTHER_ID)}`);
  const n = await assertShowsOrder(page, order);
  assert.ok(n >= 50, `checked ${n} fields`);
  const created = page.locator('#order-fields dd[data-field="date_created"]');
  assert.equal(await created.locator("small.raw").textContent(), OTHER_DATE, "the date as sent, in small print");
  assert.equal(await created.locator("time").getAttribute("datetime"), "2026-12-01T20:39:28.708Z");
  // A few of them by hand, under the parent each belongs to; a value that
  // is not a string is marked as JSON (1.0 the number, "1.0" the text).
  const json = (text) => ({ text, json: true });
  assert.deepEqual(await otherField(page, "#order-other-fields", "weight"), json("1e3"));
  assert.deepEqual(await otherField(page, "#order-other-fields", '<img src=x onerror="window.__pwned = 5">'),
    { text: "<script>window.__pwned = 6</script>", json: false });
  assert.equal(await otherField(page, "#delivery-other-fields", "weight"), null, "an order's field is not the delivery's");
  assert.deepEqual(await otherField(page, "#delivery-other-fields", "floor"), json("3"));
  assert.deepEqual(await otherField(page, "#payment-other-fields", "installments"), json("[1e3,2]"));
  assert.deepEqual(await otherField(page, "#items tbody tr:nth-child(2).other", "dims"), json('{"w":1.0,"h":2e-1}'));
  assert.deepEqual(await otherField(page, "#items tbody tr:nth-child(4).other",
    '<iframe src="javascript:window.__pwned = 8">'), { text: "1.0", json: false });
  const wrap = await page.locator(".table-wrap").evaluate((e) => [e.scrollWidth, e.clientWidth]);
  assert.ok(wrap[0] <= wrap[1], `the items table still fits a desktop window without scrolling (${wrap})`);
  assert.deepEqual(await effects(page), { pwned: null, elements: 0, polluted: null });
  await close();
});

check("on a phone-width screen an order's other fields fit and read under their parent", async (browser) => {
  const order = await otherOrder();
  const { page, close } = await open(browser, PHONE);
  await page.goto(`${BASE_URL}?id=${encodeURIComponent(OTHER_ID)}`);
  await assertShowsOrder(page, order);
  const layout = await page.evaluate(() => ({
    pageWidth: document.documentElement.scrollWidth,
    viewport: window.innerWidth,
    orderOther: document.querySelector("#order-other").getBoundingClientRect(),
    delivery: document.querySelector("#delivery-fields").getBoundingClientRect(),
  }));
  assert.ok(layout.pageWidth <= layout.viewport, `no sideways scrolling (${layout.pageWidth} > ${layout.viewport})`);
  assert.ok(layout.orderOther.bottom <= layout.delivery.top, "the order's other fields come before the delivery");
  assert.deepEqual(await effects(page), { pwned: null, elements: 0, polluted: null });
  await close();
});

check("an earlier lookup's late answer never replaces a later lookup's order", async (browser) => {
  const later = await orderJson(HOSTILE_ID);
  const { page, close } = await open(browser, DESKTOP);
  await page.addInitScript(recordAnswers);
  // The first lookup's answer is held until the second's order is shown.
  let held;
  const holding = new Promise((resolve) => { held = resolve; });
  let release;
  const released = new Promise((resolve) => { release = resolve; });
  await page.route(`**/orders/${ORDER_ID}`, async (route) => {
    held();
    await released;
    // The page may have given up on it by now.
    await route.continue().catch(() => {});
  });
  await page.goto(BASE_URL);
  await page.getByLabel("Order id").fill(ORDER_ID);
  await page.getByRole("button", { name: "Show" }).click();
  await holding;
  await page.getByLabel("Order id").fill(HOSTILE_ID);
  await page.getByRole("button", { name: "Show" }).click();
  await assertShowsOrder(page, later);

  release();
  // The page has had the first answer: its fetch settled (answered or
  // aborted), and whatever of it the page read is read.
  await page.waitForFunction((path) => {
    const notes = window.__answers.filter(([, url]) => new URL(url, location.href).pathname.endsWith(path));
    const count = (kind) => notes.filter(([k]) => k === kind).length;
    return count("settled") > 0 && count("reading") === count("read");
  }, `/orders/${ORDER_ID}`, { timeout: 10_000 });
  await assertShowsOrder(page, later);
  assert.equal(await page.locator("#status").textContent(), "", "no error for the abandoned lookup");
  assert.equal(new URL(page.url()).searchParams.get("id"), HOSTILE_ID);
  await close();
});

check("on a phone-width screen the page fits and the order reads top to bottom", async (browser) => {
  const order = await orderJson(HOSTILE_ID);
  const { page, close } = await open(browser, PHONE);
  await page.goto(`${BASE_URL}?id=${encodeURIComponent(HOSTILE_ID)}`);
  await assertShowsOrder(page, order);
  await page.locator("#recent a", { hasText: ORDER_ID }).waitFor();
  const layout = await page.evaluate(() => {
    const box = (sel) => document.querySelector(sel).getBoundingClientRect();
    return {
      pageWidth: document.documentElement.scrollWidth,
      viewport: window.innerWidth,
      input: box("#order-id"),
      button: box("#lookup button"),
      inputFont: parseFloat(getComputedStyle(document.querySelector("#order-id")).fontSize),
      order: box("#order"),
      recent: box("aside"),
      itemsHeader: getComputedStyle(document.querySelector("#items thead")).display,
    };
  });
  assert.ok(layout.pageWidth <= layout.viewport, `no sideways scrolling (${layout.pageWidth} > ${layout.viewport})`);
  assert.ok(layout.input.right <= layout.viewport && layout.button.right <= layout.viewport, "the form fits");
  assert.ok(layout.button.height >= 36, `the button is big enough to tap (${layout.button.height}px)`);
  assert.ok(layout.inputFont >= 16, "the input's text is large enough that phones do not zoom in");
  assert.ok(layout.recent.top >= layout.order.bottom, "the recent list comes after the order, not beside it");
  assert.equal(layout.itemsHeader, "none", "items are shown as labelled cards, not a wide table");
  await close();
});

// Text with every kind of space as a plain one (ICU puts a narrow
// no-break space before "PM").
const plain = (text) => text.replace(/\s/g, " ");

check("an order reads at a glance: labels for people, local times, amounts in their currency, items with their total", async (browser) => {
  const order = await orderJson(REAL_ID);
  const { page, close } = await open(browser, DESKTOP);
  await page.goto(`${BASE_URL}?id=${encodeURIComponent(REAL_ID)}`);
  await assertShowsOrder(page, order);
  // Berlin is UTC+1 in December: 22:41 at +03:00 is 20:41 there.
  assert.equal(plain(await page.locator("#order-summary").textContent()), "Dec 1, 2026, 8:41 PM · 6,391 RUB · 3 items");
  const field = (list, key) => page.locator(`#${list} dd[data-field="${key}"]`);
  assert.equal(plain(await field("order-fields", "date_created").locator("time").textContent()), "Dec 1, 2026, 8:41:07 PM GMT+1");
  assert.equal(await field("order-fields", "date_created").locator("small.raw").textContent(), "2026-12-01T22:41:07.513+03:00");
  assert.equal(plain(await field("payment-fields", "payment_dt").locator("time").textContent()), "Dec 1, 2026, 8:41:35 PM GMT+1");
  assert.equal(await field("payment-fields", "payment_dt").locator("small.raw").textContent(), "1796154095");
  assert.equal(await field("payment-fields", "amount").textContent(), "6,391 RUB");
  assert.equal(await page.locator('#order-tech-fields dt[title="sm_id"]').textContent(), "SM id");
  assert.equal(await page.locator("#items td[data-field=sale]").first().textContent(), "20%");
  assert.equal(await page.locator("#items tfoot").textContent(), "Total of 3 items6,091 RUB");
  // What people look for first comes first; the pipeline's fields last.
  const box = (sel) => page.locator(sel).boundingBox();
  assert.ok((await box("#order-tech-fields")).y > (await box("#items")).y, "technical details after the items");
  const wrap = await page.locator(".table-wrap").evaluate((e) => [e.scrollWidth, e.clientWidth]);
  assert.ok(wrap[0] <= wrap[1], `the items table fits a desktop window without scrolling (${wrap})`);
  await page.locator(`#recent a[title="${REAL_ID}"]`).waitFor();
  // The recent list holds the hostile order's summary too: it wraps.
  await page.locator(`#recent a[title="${HOSTILE_ID}"]`).waitFor();
  const width = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(width[0] <= width[1], `no sideways scrolling (${width})`);
  await page.screenshot({ path: join(SCREENSHOT_DIR, "page-desktop.png"), fullPage: true });
  await close();
  // The same order read in Tokyo: the reader's own time.
  const tokyo = await open(browser, { ...DESKTOP, timezoneId: "Asia/Tokyo" });
  await tokyo.page.goto(`${BASE_URL}?id=${encodeURIComponent(REAL_ID)}`);
  await tokyo.page.locator("#order").waitFor({ state: "visible" });
  assert.equal(plain(await tokyo.page.locator('#order-fields dd[data-field="date_created"] time').textContent()),
    "Dec 2, 2026, 4:41:07 AM GMT+9");
  await tokyo.close();
});

check("on a phone the order reads top to bottom, times, amounts and total included", async (browser) => {
  const order = await orderJson(REAL_ID);
  const { page, close } = await open(browser, PHONE);
  await page.goto(`${BASE_URL}?id=${encodeURIComponent(REAL_ID)}`);
  await assertShowsOrder(page, order);
  await page.locator(`#recent a[title="${REAL_ID}"]`).waitFor();
  await stripUntil(page, "a rate", (s) => /^[0-9]/.test(s.rate));
  const layout = await page.evaluate(() => {
    const box = (sel) => document.querySelector(sel).getBoundingClientRect();
    return {
      pageWidth: document.documentElement.scrollWidth,
      viewport: window.innerWidth,
      chart: box("#live-chart"),
      total: box("#items-total"),
    };
  });
  assert.ok(layout.pageWidth <= layout.viewport, `no sideways scrolling (${layout.pageWidth} > ${layout.viewport})`);
  assert.ok(layout.chart.width > 100 && layout.chart.right <= layout.viewport, `the chart fits (${JSON.stringify(layout.chart)})`);
  assert.ok(layout.total.width > 0 && layout.total.right <= layout.viewport, "the total fits");
  assert.equal(await page.locator("#items-total").getAttribute("data-label"), "Total of 3 items", "the total says what it is");
  await page.screenshot({ path: join(SCREENSHOT_DIR, "page-phone.png"), fullPage: true });
  await close();
});

// The page's recent list, each entry as [id, the summary line or null].
async function recentList(page) {
  return page.locator("#recent").evaluate((ul) => [...ul.querySelectorAll("a")].map((a) => [
    a.querySelector(".id").textContent,
    a.querySelector(".meta")?.textContent.replace(/\s/g, " ") ?? null,
  ]));
}

check("the recent list shows when, how many items and how much beside each whole id", async (browser) => {
  const { page, close } = await open(browser, DESKTOP);
  await page.goto(BASE_URL);
  const real = page.locator(`#recent a[title="${REAL_ID}"]`);
  await real.waitFor();
  assert.match(plain(await real.locator(".meta").textContent()), /^(Dec 1, 2026, )?8:41 PM · 3 items · 6,391 RUB$/);
  assert.equal(await real.locator("time").getAttribute("datetime"), "2026-12-01T19:41:07.513Z");
  assert.match(await real.locator("time").getAttribute("title"), /\(2026-12-01T22:41:07\.513\+03:00\)$/, "the date as sent on hover");
  const example = page.locator(`#recent a[title="${ORDER_ID}"] .meta`);
  assert.match(plain(await example.textContent()), / · 1 item · 1,817 USD$/);
  // The producer's 22-character id fits whole, on one line.
  const fit = (locator) => locator.evaluate((e) => ({
    whole: e.scrollWidth <= e.clientWidth,
    lines: Math.round(e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight)),
    ellipsis: getComputedStyle(e).textOverflow,
  }));
  assert.equal(REAL_ID.length, 22);
  assert.deepEqual(await fit(real.locator(".id")), { whole: true, lines: 1, ellipsis: "ellipsis" });

  // A longer id, one whose order was evicted, and a summary holding markup
  // and an amount above 2^53, as a service may send them.
  const long = "L".repeat(30) + "-" + "o".repeat(33);
  const markup = '<img src=x onerror="window.__pwned = 11">';
  const body = `{"orders":["${long}","gone","odd"],"recent":[`
    + `{"order_uid":"${long}","date_created":"2021-11-26T06:22:19Z","item_count":1,"amount":5,"currency":"EUR"},`
    + '{"order_uid":"gone"},'
    + `{"order_uid":"odd","date_created":"2021-11-26 06:22:60.5z","item_count":2,"amount":9223372036854775807,"currency":${JSON.stringify(markup)}}]}`;
  await page.route((url) => url.pathname.endsWith("/orders"), (route) =>
    route.fulfill({ status: 200, contentType: "application/json", body }));
  await page.locator("#recent a[title=gone]").waitFor();
  assert.deepEqual(await recentList(page), [
    [long, "Nov 26, 2021, 7:22 AM · 1 item · 5 EUR"],
    ["gone", null],
    ["odd", `Nov 26, 2021, 7:22 AM · 2 items · 9,223,372,036,854,775,807 ${markup}`],
  ]);
  const cut = page.locator(`#recent a[title="${long}"]`);
  assert.deepEqual(await fit(cut.locator(".id")), { whole: false, lines: 1, ellipsis: "ellipsis" },
    "a longer id ends in an ellipsis, on one line");
  assert.equal(await cut.getAttribute("title"), long, "the whole id on hover");
  assert.equal(await page.locator("#recent img").count(), 0);
  assert.equal(await page.evaluate(() => window.__pwned ?? null), null);

  // A service from before the summaries: the bare ids still list.
  await page.unroute((url) => url.pathname.endsWith("/orders"));
  await page.route((url) => url.pathname.endsWith("/orders"), (route) =>
    route.fulfill({ status: 200, contentType: "application/json", body: '{"orders":["one","two"]}' }));
  await page.locator("#recent a[title=one]").waitFor();
  assert.deepEqual(await recentList(page), [["one", null], ["two", null]]);
  await close();
});

check("with no orders yet, the list says how to publish one and the form offers no id that 404s", async (browser) => {
  const { page, close } = await open(browser, DESKTOP);
  let body = '{"orders":[],"recent":[]}';
  await page.route((url) => url.pathname.endsWith("/orders"), (route) =>
    route.fulfill({ status: 200, contentType: "application/json", body }));
  await page.goto(BASE_URL);
  const empty = page.locator("#recent-empty");
  await empty.waitFor({ state: "visible" });
  const text = plain(await empty.textContent());
  assert.match(text, /No orders yet/);
  assert.match(text, /cargo run --example producer/);
  assert.match(text, /nats pub orders "\$\(cat examples\/example\.json\)"/);
  const placeholder = await page.getByLabel("Order id").getAttribute("placeholder");
  assert.doesNotMatch(placeholder, /^[A-Za-z0-9_-]{1,64}$/, `the placeholder is no order id: ${placeholder}`);
  // The first order arrives: the list replaces the advice.
  body = `{"orders":["${ORDER_ID}"],"recent":[{"order_uid":"${ORDER_ID}"}]}`;
  await empty.waitFor({ state: "hidden" });
  assert.deepEqual(await recentList(page), [[ORDER_ID, null]]);
  await close();
});

// The chart's bars, left to right: where each is and what it stands for.
async function chartBars(page) {
  return page.locator("#live-bars").evaluate((g) => [...g.children].map((r) => ({
    tag: r.tagName,
    x: Number(r.getAttribute("x")),
    height: Number(r.getAttribute("height")),
    rate: Number(r.dataset.rate),
  })));
}

check("the strip charts orders ingested per second, and shows a rate soon after the first answer", async (browser) => {
  const { page, close } = await open(browser, DESKTOP);
  // The service's count at each answer: 0, then 0, 50 and 150 more, then
  // no more. The second answer waits for the check to let it go.
  const counts = [0, 0, 50, 150];
  let answered = 0;
  const asked = [];
  let release;
  const held = new Promise((r) => { release = r; });
  await page.route("**/status", async (route) => {
    const n = answered++;
    asked.push(Date.now());
    if (n === 1) await held;
    const orders_ingested = counts[Math.min(n, counts.length - 1)];
    await route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify({
      orders_ingested, dead_letters: 0, consumer_pending: 0, consumer_ack_pending: 0, cache_orders: 3,
    }) });
  });
  await page.goto(BASE_URL);
  // After one answer there is no rate yet: the strip says so, rather
  // than a dash that reads as "nothing".
  await stripUntil(page, "the first answer", (s) => s.cached === "3");
  assert.equal((await strip(page)).rate, "measuring…");
  assert.deepEqual(await chartBars(page), []);
  assert.equal(await page.locator("#live-chart-note").textContent(), "No rate yet.");
  while (asked.length < 2) await page.waitForTimeout(50);
  assert.ok(asked[1] - asked[0] < LIVE_EVERY_MS, `the second answer is asked for sooner (${asked[1] - asked[0]} ms)`);
  release();
  await stripUntil(page, "a rate from the second answer", (s) => s.rate === "0");
  // Orders arrive, then stop: a bar per interval, each as tall as its rate
  // against the highest, the highest the chart's whole height.
  await stripUntil(page, "the rate back to 0", (s) => s.rate === "0" && answered > counts.length, 15_000);
  const bars = await chartBars(page);
  assert.ok(bars.length >= 3, `a bar per full interval: ${JSON.stringify(bars)}`);
  assert.ok(bars.every((b) => b.tag === "rect"), "only bars are drawn");
  assert.deepEqual(bars.map((b) => b.x), [...bars.map((b) => b.x)].sort((a, b) => a - b), "oldest on the left");
  assert.ok(bars.every((b) => b.x >= 0 && b.x <= 300));
  const peak = Math.max(...bars.map((b) => b.rate));
  assert.ok(peak > 30 && peak < 70, `the peak is about 50 / s: ${peak}`);
  for (const b of bars) {
    assert.ok(Math.abs(b.height - 40 * b.rate / peak) < 0.02, `a bar as tall as its rate: ${JSON.stringify(b)}`);
  }
  // The first interval, half a second, is not charted: at a slow pace it
  // reads as a peak every later bar is scaled against.
  assert.ok(bars[0].rate > 20 && bars[0].rate < 30, `the first bar is the first full interval, 0 to 50 orders: ${JSON.stringify(bars[0])}`);
  assert.ok(bars.some((b) => b.height === 0), "no orders, no bar");
  const note = await page.locator("#live-chart-note").textContent();
  assert.match(note, /^Last 5 min: peak [0-9.]+ \/ s$/);
  assert.equal(await page.locator("#live-chart-title").textContent(), `Orders ingested per second. ${note}`);
  assert.equal(await page.locator("#live-chart").getAttribute("role"), "img");
  const [chart, cell] = [await page.locator("#live-chart").boundingBox(), await page.locator("#live dl div.rate").boundingBox()];
  assert.ok(chart.width > 50 && chart.x >= cell.x && chart.x + chart.width <= cell.x + cell.width, "the chart sits in the rate's cell");
  await close();
});

async function serverStatus() {
  const res = await fetch(new URL("status", BASE_URL));
  assert.equal(res.status, 200, "the API serves /status");
  return res.json();
}

// The strip's four numbers, as the page shows them.
async function strip(page) {
  return page.evaluate(() => Object.fromEntries(["rate", "lag", "dead", "cached"]
    .map((k) => [k, document.getElementById(`live-${k}`).textContent])));
}

// Waits until `test(strip)` holds, polling the page; fails naming the last
// numbers seen.
async function stripUntil(page, what, test, timeout = 20_000) {
  const deadline = Date.now() + timeout;
  let seen;
  for (;;) {
    seen = await strip(page);
    if (test(seen)) return seen;
    assert.ok(Date.now() < deadline, `${what}: the strip shows ${JSON.stringify(seen)}`);
    await page.waitForTimeout(100);
  }
}

// Runs after the checks that expect ORDER_ID among the recent orders: the
// orders it has published push it out of the list.
check("the live status strip shows the service's numbers at a glance and keeps up", async (browser) => {
  const server = await serverStatus();
  assert.equal(server.consumer_pending + server.consumer_ack_pending, 0, "nothing waits");
  const { page, close } = await open(browser, DESKTOP);
  await page.goto(BASE_URL);
  // What the service says, as it says it; the rate is 0 with nothing arriving.
  await stripUntil(page, "the service's numbers", (s) =>
    s.cached === String(server.cache_orders) && s.dead === String(server.dead_letters)
      && s.lag === "0" && s.rate === "0");
  assert.ok(server.dead_letters > 0, "browser.rs dead-lettered a message");
  const box = await page.locator("#live").boundingBox();
  assert.ok(box && box.y + box.height <= DESKTOP.viewport.height / 3,
    `the strip is at the top of the page (${JSON.stringify(box)})`);
  for (const k of ["rate", "lag", "dead", "cached"]) {
    assert.ok(await page.locator(`#live-${k}`).isVisible(), `${k} is visible`);
  }
  assert.match(await page.locator("#live dl div", { has: page.locator("#live-dead") }).getAttribute("class"),
    /\bwarn\b/, "dead letters stand out");

  // Orders arrive: the rate rises above 0 and the cache grows by as many.
  writeFileSync(LIVE_SIGNAL, "publish");
  await stripUntil(page, "a rate while orders arrive", (s) => Number(s.rate) > 0);
  await page.waitForFunction(() => [...document.querySelectorAll("#live-bars rect")]
    .some((r) => Number(r.dataset.rate) > 0 && Number(r.getAttribute("height")) > 0));
  const total = server.cache_orders + LIVE_COUNT;
  await stripUntil(page, "every order cached", (s) => s.cached === String(total), 30_000);
  // And once they stop, the rate falls back to 0.
  await stripUntil(page, "no rate once they stop", (s) => s.rate === "0" && s.lag === "0");
  assert.equal((await serverStatus()).cache_orders, total);
  await close();
});

check("the strip adds up the backlog, shows counts only, and says when the service is away", async (browser) => {
  const { page, close } = await open(browser, DESKTOP);
  let answer = {
    orders_ingested: 10, dead_letters: 0, consumer_pending: 1_200_000,
    consumer_ack_pending: 34, cache_orders: 2_500_000,
  };
  await page.route("**/status", (route) => answer === null
    ? route.abort()
    : route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify(answer) }));
  await page.goto(BASE_URL);
  await stripUntil(page, "the backlog added up", (s) =>
    s.lag === "1,200,034" && s.cached === "2,500,000" && s.dead === "0");
  assert.doesNotMatch(await page.locator("#live dl div", { has: page.locator("#live-dead") }).getAttribute("class") ?? "",
    /\bwarn\b/, "no dead letters, no warning");
  // An answer that is not counts is not shown, even as text.
  answer = { ...answer, cache_orders: "<img src=x onerror=\"window.__pwned = 1\">" };
  await page.locator("#live-note").waitFor({ state: "visible" });
  assert.equal(await page.locator("#live-cached").textContent(), "2,500,000");
  // The service away: the strip says so and keeps its last numbers, greyed.
  answer = null;
  await page.waitForTimeout(LIVE_EVERY_MS + 500);
  assert.equal(await page.locator("#live-note").textContent(), "Live status unavailable; retrying.");
  assert.match(await page.locator("#live").getAttribute("class"), /\bstale\b/);
  // Back: the note goes.
  answer = { orders_ingested: 10, dead_letters: 2, consumer_pending: 0,
    consumer_ack_pending: 0, cache_orders: 3 };
  await stripUntil(page, "the strip back", (s) => s.cached === "3" && s.dead === "2");
  assert.equal(await page.locator("#live-note").isVisible(), false);
  const effects = await page.evaluate(() => ({
    pwned: window.__pwned ?? null,
    elements: document.querySelectorAll("#live img, #live script").length,
  }));
  assert.deepEqual(effects, { pwned: null, elements: 0 });
  await close({ allow: [/^console error: Failed to load resource: net::ERR_FAILED/] });
});

// The second server: it answers 401 without its token, and 404 for the
// list it does not have. The browser logs each such answer as an error.
const CLOSED_ANSWERS = [
  /^HTTP 401 /,
  /^console error: Failed to load resource: the server responded with a status of 401/,
  /^HTTP 404 .*\/orders$/,
  /^console error: Failed to load resource: the server responded with a status of 404.*\/orders\)$/,
];

// What the page keeps where: the token in this tab's sessionStorage only.
async function kept(page) {
  return page.evaluate(() => ({
    session: sessionStorage.getItem("order_cache.token"),
    local: localStorage.length,
    cookie: document.cookie,
  }));
}

// Gives the token form `token`, once it shows.
async function giveToken(page, token) {
  await page.locator("#token").waitFor({ state: "visible" });
  await page.getByLabel("Access token").fill(token);
  await page.getByRole("button", { name: "Use token" }).click();
}

check("with an access token set, the page asks for it on a 401 and then shows the order", async (browser) => {
  const order = await orderJson(ORDER_ID, TOKEN_BASE_URL, { Authorization: `Bearer ${TOKEN}` });
  const { page, close } = await open(browser, DESKTOP, TOKEN_BASE_URL);
  const res = await page.goto(`${TOKEN_BASE_URL}?id=${encodeURIComponent(ORDER_ID)}`);
  assert.match(res.headers()["content-security-policy"], /script-src 'self'(;|$)/, "the CSP stays strict");
  await page.locator("#token").waitFor({ state: "visible" });
  assert.equal(await page.locator("#token-note").textContent(), "This service needs an access token to show orders.");
  assert.equal(await statusText(page), "Enter the access token to see this order.");
  assert.equal(await page.locator("#order").isVisible(), false);
  assert.equal(await page.getByLabel("Access token").getAttribute("type"), "password", "the token is not shown as typed");
  await giveToken(page, TOKEN);
  await assertShowsOrder(page, order);
  assert.equal(await page.locator("#token").isVisible(), false, "the form goes once the token works");
  // Looking up another order needs no second asking.
  await page.getByLabel("Order id").fill(HOSTILE_ID);
  await page.getByRole("button", { name: "Show" }).click();
  await assertShowsOrder(page, await orderJson(HOSTILE_ID, TOKEN_BASE_URL, { Authorization: `Bearer ${TOKEN}` }));
  assert.equal(await page.locator("#token").isVisible(), false);
  await close({ allow: CLOSED_ANSWERS });
});

check("the token is kept for the tab only and sent as a header, never in an address", async (browser) => {
  const { page, context, close } = await open(browser, DESKTOP, TOKEN_BASE_URL);
  const sent = [];
  page.on("request", (r) => sent.push(r));
  await page.goto(TOKEN_BASE_URL);
  assert.deepEqual(await kept(page), { session: null, local: 0, cookie: "" });
  await giveToken(page, TOKEN);
  await page.getByLabel("Order id").fill(ORDER_ID);
  await page.getByRole("button", { name: "Show" }).click();
  await page.locator("#order").waitFor({ state: "visible" });
  assert.deepEqual(await kept(page), { session: TOKEN, local: 0, cookie: "" }, "sessionStorage only");
  assert.deepEqual(await context.cookies(), [], "no cookie");
  const lookups = sent.filter((r) => new URL(r.url()).pathname.endsWith(`/orders/${ORDER_ID}`));
  assert.ok(lookups.length > 0, "the order was asked for");
  for (const r of lookups) {
    assert.equal(await r.headerValue("authorization"), `Bearer ${TOKEN}`, "sent as a bearer token");
  }
  assert.ok(sent.every((r) => !r.url().includes(TOKEN)), "never in an address");
  // The same tab keeps it across a reload...
  await page.reload();
  await page.getByLabel("Order id").fill(ORDER_ID);
  await page.getByRole("button", { name: "Show" }).click();
  await page.locator("#order").waitFor({ state: "visible" });
  assert.equal(await page.locator("#token").isVisible(), false, "not asked again in the same tab");
  // ...another tab does not have it.
  const other = await context.newPage();
  watch(other, TOKEN_BASE_URL);
  await other.goto(`${TOKEN_BASE_URL}?id=${encodeURIComponent(ORDER_ID)}`);
  await other.locator("#token").waitFor({ state: "visible" });
  assert.equal((await kept(other)).session, null, "a new tab asks again");
  await close({ allow: CLOSED_ANSWERS });
});

check("a refused token is forgotten and the page asks again", async (browser) => {
  const order = await orderJson(ORDER_ID, TOKEN_BASE_URL, { Authorization: `Bearer ${TOKEN}` });
  const { page, close } = await open(browser, DESKTOP, TOKEN_BASE_URL);
  await page.goto(`${TOKEN_BASE_URL}?id=${encodeURIComponent(ORDER_ID)}`);
  await giveToken(page, "not-the-token-0123456789");
  await page.waitForFunction(() => document.getElementById("token-note").textContent.includes("refused"));
  assert.equal(await page.locator("#token").isVisible(), true);
  assert.equal((await kept(page)).session, null, "the refused token is not kept");
  // Pasted with a zero-width space: fetch could not send it, so no 401
  // would ever ask again. The form says so and keeps asking.
  await giveToken(page, `${TOKEN}\u200b`);
  await page.waitForFunction(() => document.getElementById("token-note").textContent.includes("stray character"));
  assert.equal(await page.locator("#token").isVisible(), true, "still asking");
  assert.equal((await kept(page)).session, null, "a token that cannot be sent is not kept");
  await giveToken(page, TOKEN);
  await assertShowsOrder(page, order);
  // The token stops working (rotated away): the next answer is a 401, and
  // the page asks again rather than failing quietly.
  await page.evaluate(() => sessionStorage.setItem("order_cache.token", "a-retired-token-0123456789"));
  await page.getByLabel("Order id").fill(HOSTILE_ID);
  await page.getByRole("button", { name: "Show" }).click();
  await page.locator("#token").waitFor({ state: "visible" });
  assert.equal(await page.locator("#token-note").textContent(), "That access token was refused. Enter a valid one.");
  await giveToken(page, TOKEN);
  await assertShowsOrder(page, await orderJson(HOSTILE_ID, TOKEN_BASE_URL, { Authorization: `Bearer ${TOKEN}` }));
  await close({ allow: CLOSED_ANSWERS });
});

check("with the listing turned off the page hides the recent list", async (browser) => {
  const { page, close } = await open(browser, DESKTOP, TOKEN_BASE_URL);
  await page.goto(TOKEN_BASE_URL);
  await giveToken(page, TOKEN);
  await page.locator("#recent-box").waitFor({ state: "hidden" });
  assert.equal(await page.locator("#recent a").count(), 0);
  const res = await page.evaluate(async (token) => {
    const r = await fetch("orders", { headers: { Authorization: `Bearer ${token}` } });
    return r.status;
  }, TOKEN);
  assert.equal(res, 404, "the service has no listing");
  // The strip still works with the token.
  await stripUntil(page, "the strip with the token", (s) => s.cached !== "–");
  await close({ allow: CLOSED_ANSWERS });
});

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
mkdirSync(SCREENSHOT_DIR, { recursive: true });
let failed = 0;
for (const { name, fn } of checks) {
  try {
    await fn(browser);
    console.log(`ok    ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL  ${name}\n      ${String(e.stack ?? e).replaceAll("\n", "\n      ")}`);
  }
}
await browser.close();
console.log(`${checks.length - failed} of ${checks.length} browser checks passed`);
process.exit(failed === 0 ? 0 : 1);
