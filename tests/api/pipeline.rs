//! Stream → validate → PostgreSQL → cache → HTTP, end to end.

use order_cache::ingest::{ERROR_HEADER, REASON_HEADER, SEQUENCE_HEADER};
use serde_json::{json, Value};

use crate::corpus::hostile;
use crate::helpers::{example_order, set_at, spawn_app, unique, TestDb, TestStreams};

#[tokio::test(flavor = "multi_thread")]
async fn the_example_order_round_trips_from_stream_to_http() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    let sent: Value =
        serde_json::from_slice(include_bytes!("../../examples/example.json")).unwrap();

    app.publish(include_bytes!("../../examples/example.json").to_vec(), None)
        .await;

    let served = app.wait_for_order("b563feb7b2b84b6test").await;
    assert_eq!(served, sent);
    let (status, body) = app
        .client
        .get("/getOrder?id=b563feb7b2b84b6test")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), sent);
    assert_eq!(db.count("SELECT count(*) AS n FROM orders").await, 1);
    assert_eq!(db.count("SELECT count(*) AS n FROM items").await, 1);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_is_dead_lettered_with_its_reason_and_valid_orders_around_it_are_served() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    let garbage = hostile();
    assert!(garbage.len() >= 40);
    let mut uids = Vec::new();

    for (i, (payload, _)) in garbage.iter().enumerate() {
        let uid = unique("ok");
        app.publish_order(&example_order(&uid)).await;
        uids.push(uid);
        app.publish(payload.clone(), Some(&format!("garbage-{i}")))
            .await;
    }

    for uid in &uids {
        app.wait_for_order(uid).await;
    }
    let mut letters = app.dead_letters(garbage.len() as u64).await;
    assert_eq!(letters.len(), garbage.len());
    // Batches are written concurrently, so dead letters may be published out
    // of order: put them back in the order of the source stream.
    let source_seq = |m: &async_nats::jetstream::message::StreamMessage| -> u64 {
        m.headers
            .get(SEQUENCE_HEADER)
            .and_then(|v| v.as_str().parse().ok())
            .expect("sequence header")
    };
    letters.sort_by_key(source_seq);
    for (letter, (payload, reason)) in letters.iter().zip(&garbage) {
        let shown = String::from_utf8_lossy(&payload[..payload.len().min(60)]).into_owned();
        assert!(
            letter.payload[..] == payload[..],
            "original bytes kept for {shown:?}"
        );
        assert_eq!(
            letter.headers.get(REASON_HEADER).map(|v| v.as_str()),
            Some(*reason),
            "reason of {shown:?}"
        );
        assert!(letter.headers.get(ERROR_HEADER).is_some());
    }
    assert_eq!(
        db.count("SELECT count(*) AS n FROM orders").await,
        uids.len() as i64
    );
    let (_, metrics) = app.client.get("/metrics").await.unwrap();
    let metrics = String::from_utf8(metrics).unwrap();
    let shapes = garbage.iter().filter(|(_, r)| *r == "shape").count();
    assert!(
        metrics.contains(&format!(
            "order_cache_orders_rejected_total{{reason=\"shape\"}} {shapes}"
        )),
        "{metrics}"
    );
    assert!(app.is_running(), "the service never stopped");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_is_stored_once_and_the_first_version_is_kept() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    let uid = unique("dup");
    let first = example_order(&uid);
    let mut second = first.clone();
    second["track_number"] = json!("CHANGED");

    app.publish_order(&first).await;
    app.wait_for_order(&uid).await;
    // A different message id gets past the broker's de-duplication.
    app.publish(serde_json::to_vec(&second).unwrap(), Some("another-id"))
        .await;
    app.publish(serde_json::to_vec(&first).unwrap(), None).await;
    let marker = unique("after");
    app.publish_order(&example_order(&marker)).await;
    app.wait_for_order(&marker).await;

    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM orders WHERE order_uid = '{uid}'"
        ))
        .await,
        1
    );
    assert_eq!(db.count("SELECT count(*) AS n FROM items").await, 2);
    assert_eq!(app.wait_for_order(&uid).await, first);
    let (_, metrics) = app.client.get("/metrics").await.unwrap();
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("order_cache_orders_duplicate_total 2"),
        "{metrics}"
    );
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_restores_the_cache_from_postgres() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    let uids: Vec<String> = (0..50).map(|_| unique("r")).collect();
    for uid in &uids {
        app.publish_order(&example_order(uid)).await;
    }
    for uid in &uids {
        app.wait_for_order(uid).await;
    }
    app.stop().await.unwrap();

    // New streams: nothing can be re-ingested, so what is served was restored.
    let other_streams = TestStreams::new();
    let app = spawn_app(&db, &other_streams).await;

    let (_, metrics) = app.client.get("/metrics").await.unwrap();
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains("order_cache_cache_orders 50"), "{metrics}");
    // The recent list is PostgreSQL's order of insertion. Two batches are
    // written at once, so between batches it may differ from the order of
    // publishing; the newest order is among the first either way.
    let (_, recent) = app.client.get("/orders").await.unwrap();
    let recent: Value = serde_json::from_slice(&recent).unwrap();
    let newest = db
        .count(&format!(
            "SELECT count(*) AS n FROM (SELECT order_uid FROM orders ORDER BY seq DESC LIMIT 1) t \
             WHERE order_uid = '{}'",
            recent["orders"][0].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        newest, 1,
        "the list starts with the order stored last: {recent}"
    );
    let listed: Vec<&str> = recent["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(listed.len(), 20);
    // Exactly the 20 stored last, newest first. Not "the one published
    // last is among them": with two batches in flight, a batch of more
    // than 20 earlier orders may commit after the one holding it.
    let in_order = listed
        .iter()
        .map(|uid| format!("'{uid}'"))
        .collect::<Vec<_>>()
        .join(",");
    let top = db
        .count(&format!(
            "SELECT count(*) AS n FROM (SELECT order_uid, row_number() OVER (ORDER BY seq DESC) AS r \
             FROM orders) t WHERE r <= 20 AND array_position(ARRAY[{in_order}], order_uid::text) = r"
        ))
        .await;
    assert_eq!(
        top, 20,
        "the list is the 20 stored last, newest first: {recent}"
    );
    for uid in &uids {
        assert_eq!(app.wait_for_order(uid).await, example_order(uid));
    }
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_postgres_refuses_is_dead_lettered_and_the_rest_of_its_batch_is_stored() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    db.execute("ALTER TABLE items ADD CONSTRAINT no_poison CHECK (brand <> 'POISON')")
        .await;
    // Publish before the consumer can take them one by one: stop, publish, start.
    app.stop().await.unwrap();
    let poison = unique("poison");
    let mut bad = example_order(&poison);
    set_at(&mut bad, "/items/0/brand", json!("POISON"));
    let good: Vec<String> = (0..20).map(|_| unique("good")).collect();
    let publisher = async_nats::jetstream::new(
        async_nats::connect(streams.nats_url.as_str())
            .await
            .unwrap(),
    );
    for (i, uid) in good.iter().enumerate() {
        if i == 10 {
            publisher
                .publish(
                    streams.config.subject.clone(),
                    serde_json::to_vec(&bad).unwrap().into(),
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
        publisher
            .publish(
                streams.config.subject.clone(),
                serde_json::to_vec(&example_order(uid)).unwrap().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let app = spawn_app(&db, &streams).await;
    for uid in &good {
        app.wait_for_order(uid).await;
    }
    let letters = app.dead_letters(1).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].headers.get(REASON_HEADER).unwrap().as_str(),
        "database"
    );
    let (status, _) = app.client.get(&format!("/orders/{poison}")).await.unwrap();
    assert_eq!(status, 404);
    assert_eq!(db.count("SELECT count(*) AS n FROM orders").await, 20);
    app.stop().await.unwrap();
}
