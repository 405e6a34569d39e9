"""An upstream Python service publishing orders the way Python services do:
a dict, ``json.dumps`` and nats-py's JetStream publish (with its ack). Its
schema grew two fields the order service does not know (``gift_wrap``, and
the delivery's ``floor``), as upstream schemas do.

``date_created`` is ``datetime.isoformat()``, in one of two variants:

- ``utc``:   ``datetime.now(timezone.utc).isoformat()`` -> ``…T06:22:19.123456+00:00``
- ``local``: ``datetime.now().astimezone().isoformat()`` -> the offset of the
  process's TZ, e.g. ``-07:00`` under ``TZ=America/Phoenix``

    python producer.py NATS_URL SUBJECT UID_PREFIX COUNT utc|local

Prints every payload it published, one a line, once JetStream acked it.
Needs nats-py (requirements.txt).
"""

import asyncio
import json
import sys
from datetime import datetime, timezone

import nats


def created(variant):
    if variant == "utc":
        return datetime.now(timezone.utc).isoformat()
    return datetime.now().astimezone().isoformat()


def new_order(uid, n, variant):
    return {
        "order_uid": uid,
        "track_number": "WBILMTESTTRACK",
        "entry": "WBIL",
        "delivery": {
            "name": "Test Testov",
            "phone": "+9720000000",
            "zip": "2639809",
            "city": "Kiryat Mozkin",
            "address": "Ploshad Mira 15",
            "region": "Kraiot",
            "email": "test@gmail.com",
            "floor": n % 9,
        },
        "payment": {
            "transaction": uid,
            "request_id": "",
            "currency": "USD",
            "provider": "wbpay",
            "amount": 1817,
            "payment_dt": 1637907727,
            "bank": "alpha",
            "delivery_cost": 1500,
            "goods_total": 317,
            "custom_fee": 0,
        },
        "items": [
            {
                "chrt_id": 9934930,
                "track_number": "WBILMTESTTRACK",
                "price": 453,
                "rid": "ab4219087a764ae0btest",
                "name": "Mascaras",
                "sale": 30,
                "size": "0",
                "total_price": 317,
                "nm_id": 2389212,
                "brand": "Vivienne Sabo",
                "status": 202,
            }
        ],
        "locale": "en",
        "internal_signature": "",
        "customer_id": "test",
        "delivery_service": "meest",
        "shardkey": "9",
        "sm_id": 99,
        "date_created": created(variant),
        "oof_shard": "1",
        "gift_wrap": n % 2 == 0,
    }


async def main(url, subject, prefix, count, variant):
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        js = nc.jetstream(timeout=10)
        for n in range(count):
            payload = json.dumps(new_order(f"{prefix}-{n}", n, variant))
            await js.publish(subject, payload.encode())
            print(payload, flush=True)
    finally:
        await nc.close()


if __name__ == "__main__":
    if len(sys.argv) != 6 or sys.argv[5] not in ("utc", "local"):
        sys.exit("usage: producer.py NATS_URL SUBJECT UID_PREFIX COUNT utc|local")
    url, subject, prefix, count, variant = sys.argv[1:]
    asyncio.run(main(url, subject, prefix, int(count), variant))
