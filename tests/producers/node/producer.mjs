// An upstream Node.js service publishing orders the way Node services do:
// an object holding a Date, JSON.stringify, and the `nats` package's
// JetStream publish (with its ack). Its schema grew two fields the order
// service does not know (`channel`, and the payment's `installments`, an
// object), as upstream schemas do.
//
// JSON.stringify writes a Date with toISOString(): UTC, always three
// fractional digits, `Z` (`2021-11-26T06:22:19.000Z` on a whole second).
//
//   npm ci && node producer.mjs NATS_URL SUBJECT UID_PREFIX COUNT
//
// Prints every payload it published, one a line, once JetStream acked it.
import { connect } from "nats";

function newOrder(uid, n) {
  return {
    order_uid: uid,
    track_number: "WBILMTESTTRACK",
    entry: "WBIL",
    delivery: {
      name: "Test Testov",
      phone: "+9720000000",
      zip: "2639809",
      city: "Kiryat Mozkin",
      address: "Ploshad Mira 15",
      region: "Kraiot",
      email: "test@gmail.com",
    },
    payment: {
      transaction: uid,
      request_id: "",
      currency: "USD",
      provider: "wbpay",
      amount: 1817,
      payment_dt: 1637907727,
      bank: "alpha",
      delivery_cost: 1500,
      goods_total: 317,
      custom_fee: 0,
      installments: { count: (n % 4) + 1, every: "month" },
    },
    items: [
      {
        chrt_id: 9934930,
        track_number: "WBILMTESTTRACK",
        price: 453,
        rid: "ab4219087a764ae0btest",
        name: "Mascaras",
        sale: 30,
        size: "0",
        total_price: 317,
        nm_id: 2389212,
        brand: "Vivienne Sabo",
        status: 202,
      },
    ],
    locale: "en",
    internal_signature: "",
    customer_id: "test",
    delivery_service: "meest",
    shardkey: "9",
    sm_id: 99,
    date_created: new Date(),
    oof_shard: "1",
    channel: "web",
  };
}

const [url, subject, prefix, count] = process.argv.slice(2);
if (count === undefined) {
  console.error("usage: node producer.mjs NATS_URL SUBJECT UID_PREFIX COUNT");
  process.exit(2);
}
const nc = await connect({ servers: url, timeout: 5000, reconnect: false });
try {
  const js = nc.jetstream({ timeout: 10000 });
  const encoder = new TextEncoder();
  for (let n = 0; n < Number(count); n++) {
    const payload = JSON.stringify(newOrder(`${prefix}-${n}`, n));
    await js.publish(subject, encoder.encode(payload));
    process.stdout.write(payload + "\n");
  }
} finally {
  await nc.close();
}
