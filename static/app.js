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

async function show(id, push) {
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
    });
    if (res.status === 404) {
      $("order").hidden = true;
      setStatus("No order with id " + id + ".", "error");
      return;
    }
    if (!res.ok) {
      $("order").hidden = true;
      const body = await res.json().catch(() => ({}));
      setStatus(body.message || "The server answered " + res.status + ".", "error");
      return;
    }
    render(await res.json());
    setStatus("", "");
  } catch (e) {
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
});
