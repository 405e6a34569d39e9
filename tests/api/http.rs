//! The HTTP contract, in-process through `warp::test`, and over a real socket
//! where the socket is the point.

use order_cache::{router, Api, Cache, Metrics, Readiness, Store, StoreConfig};
use serde_json::Value;
use warp::Filter;

use crate::helpers::{example, example_order, spawn_app, TestDb, TestStreams};

fn api_with(uids: &[&str]) -> (Api, Readiness) {
    let cache = Cache::new();
    let orders: Vec<_> = uids.iter().map(|u| example(u)).collect();
    cache.insert_orders(&orders);
    let readiness = Readiness::new();
    (
        Api::new(cache, Metrics::new(), readiness.clone()),
        readiness,
    )
}

async fn get(api: &Api, path: &str) -> (u16, Value, warp::http::HeaderMap) {
    let res = warp::test::request()
        .path(path)
        .reply(&router(api.clone()))
        .await;
    let body = serde_json::from_slice(res.body()).unwrap_or(Value::Null);
    (res.status().as_u16(), body, res.headers().clone())
}

#[tokio::test]
async fn a_cached_order_is_served_as_json() {
    let (api, _) = api_with(&["abc"]);
    let (status, body, headers) = get(&api, "/orders/abc").await;
    assert_eq!(status, 200);
    assert_eq!(body, example_order("abc"));
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let (status, body, _) = get(&api, "/getOrder?id=abc").await;
    assert_eq!(status, 200);
    assert_eq!(body, example_order("abc"));
}

#[tokio::test]
async fn an_unknown_id_is_404_with_a_json_error() {
    let (api, _) = api_with(&["abc"]);
    for path in ["/orders/nope", "/getOrder?id=nope"] {
        let (status, body, _) = get(&api, path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"], "not_found");
        assert!(body["message"].as_str().unwrap().contains("nope"));
    }
}

#[tokio::test]
async fn an_id_that_can_never_be_valid_is_400() {
    let (api, _) = api_with(&["abc"]);
    let long = format!("/orders/{}", "a".repeat(65));
    for path in [
        "/orders/",
        "/orders/a%2Fb",
        "/orders/a/b",
        "/orders/%00",
        "/orders/..",
        long.as_str(),
        "/getOrder?id=",
        "/getOrder",
        "/getOrder?id=%3Cscript%3E",
    ] {
        let (status, body, _) = get(&api, path).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(body["error"], "invalid_id", "{path}");
    }
}

#[tokio::test]
async fn readyz_is_503_until_the_cache_is_restored() {
    let (api, readiness) = api_with(&[]);
    let (status, body, _) = get(&api, "/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(body["failing"][0], "cache");
    readiness.mark_restored();
    let (status, body, _) = get(&api, "/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(body["ready"], true);
    let (status, _, _) = get(&api, "/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_content_security_policy() {
    let (api, _) = api_with(&[]);
    let res = warp::test::request()
        .path("/")
        .reply(&router(api.clone()))
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    let html = String::from_utf8(res.body().to_vec()).unwrap();
    assert!(html.contains("src=\"app.js\""));
    let js = warp::test::request()
        .path("/app.js")
        .reply(&router(api))
        .await;
    let js = String::from_utf8(js.body().to_vec()).unwrap();
    assert!(js.contains("textContent") && !js.contains("innerHTML"));
}

#[tokio::test]
async fn the_recent_list_and_metrics_are_served() {
    let (api, _) = api_with(&["one", "two"]);
    let (status, body, _) = get(&api, "/orders").await;
    assert_eq!(status, 200);
    assert_eq!(body["orders"], serde_json::json!(["two", "one"]));
    get(&api, "/orders/one").await;
    let res = warp::test::request()
        .path("/metrics")
        .reply(&router(api))
        .await;
    // The body is OpenMetrics (it ends in `# EOF`): say so.
    assert_eq!(
        res.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = String::from_utf8(res.body().to_vec()).unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("order_cache_cache_orders 2"), "{text}");
    assert!(
        text.contains(
            "order_cache_http_requests_total{route=\"/orders/{order_uid}\",status=\"200\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn the_recent_list_gives_each_order_its_time_item_count_and_amount() {
    let (api, _) = api_with(&["one", "two"]);
    let (status, body, _) = get(&api, "/orders").await;
    assert_eq!(status, 200);
    // The ids as before, for clients that read only them.
    assert_eq!(body["orders"], serde_json::json!(["two", "one"]));
    let summary = |uid: &str| {
        serde_json::json!({
            "order_uid": uid,
            "date_created": "2021-11-26T06:22:19Z",
            "item_count": 1,
            "amount": 1817,
            "currency": "USD",
        })
    };
    assert_eq!(
        body["recent"],
        serde_json::json!([summary("two"), summary("one")])
    );
}

#[tokio::test]
async fn an_id_listed_after_its_order_was_evicted_comes_without_a_summary() {
    // A budget of about two orders: the oldest of five is evicted while the
    // list still names it.
    let uids = ["r0", "r1", "r2", "r3", "r4"];
    let json_len = serde_json::to_vec(&example_order("r0")).unwrap().len();
    let cache = Cache::with_max_bytes(2 * order_cache::entry_cost("r0", json_len) + 16);
    for uid in uids {
        cache.insert_orders(&[example(uid)]);
    }
    let snapshot = cache.snapshot();
    assert!(
        uids.iter().any(|u| snapshot.get(u).is_none()),
        "one was evicted"
    );
    let api = Api::new(cache.clone(), Metrics::new(), Readiness::new());
    let (status, body, _) = get(&api, "/orders").await;
    assert_eq!(status, 200);
    let recent = body["recent"].as_array().unwrap();
    let ids: Vec<&str> = recent
        .iter()
        .map(|r| r["order_uid"].as_str().unwrap())
        .collect();
    assert_eq!(serde_json::json!(ids), body["orders"]);
    for entry in recent {
        let uid = entry["order_uid"].as_str().unwrap();
        let fields = entry.as_object().unwrap().len();
        if snapshot.get(uid).is_some() {
            assert_eq!(fields, 5, "{entry}");
            assert_eq!(entry["amount"], 1817);
        } else {
            assert_eq!(fields, 1, "the id alone: {entry}");
        }
    }
    assert!(recent.iter().any(|e| e.as_object().unwrap().len() == 1));
}

#[tokio::test]
async fn other_methods_and_routes_are_4xx() {
    let (api, _) = api_with(&["abc"]);
    let res = warp::test::request()
        .method("POST")
        .path("/orders/abc")
        .reply(&router(api.clone()))
        .await;
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, HEAD");
    let (status, body, _) = get(&api, "/no/such/route").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "no_route");
    // A path nobody serves is 404 whatever the method; 405 says it exists.
    for (method, path, want) in [
        ("POST", "/nonexistent", 404),
        ("DELETE", "/no/such/route", 404),
        ("POST", "/", 405),
        ("PUT", "/healthz", 405),
        ("POST", "/getOrder?id=abc", 405),
    ] {
        let res = warp::test::request()
            .method(method)
            .path(path)
            .reply(&router(api.clone()))
            .await;
        assert_eq!(res.status(), want, "{method} {path}");
    }
}

#[tokio::test]
async fn a_percent_encoded_id_names_the_same_order_in_the_path_and_the_query() {
    let (api, _) = api_with(&["abc-x"]);
    let (status, by_path, _) = get(&api, "/orders/abc%2Dx").await;
    assert_eq!(status, 200);
    let (status, by_query, _) = get(&api, "/getOrder?id=abc%2Dx").await;
    assert_eq!(status, 200);
    assert_eq!(by_path, by_query);
    for bad in [
        "/orders/abc%2",
        "/orders/abc%zz",
        "/orders/a%2Fb",
        "/orders/%FF",
    ] {
        let (status, body, _) = get(&api, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

#[tokio::test]
async fn the_router_mounts_under_a_prefix_beside_other_routes() {
    let (api, _) = api_with(&["abc"]);
    let app = warp::path("orders-api")
        .and(router(api))
        .or(warp::path("hello").map(|| "hi"));
    let res = warp::test::request()
        .path("/orders-api/orders/abc")
        .reply(&app)
        .await;
    assert_eq!(res.status(), 200);
    let res = warp::test::request().path("/hello").reply(&app).await;
    assert_eq!(res.body(), "hi");
    let res = warp::test::request().path("/orders-api").reply(&app).await;
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], "/orders-api/");
    let res = warp::test::request().path("/orders-api/").reply(&app).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_miss_falls_back_to_postgres_and_fills_the_cache() {
    let db = TestDb::create().await;
    let store = Store::new(StoreConfig::new(db.url.clone())).unwrap();
    store.migrate().await.unwrap();
    // Stored by "another instance": in PostgreSQL, not in this cache.
    store.insert(&[example("elsewhere")]).await.unwrap();
    let cache = Cache::new();
    let api = Api::new(cache.clone(), Metrics::new(), Readiness::new()).with_store(store);

    let (status, body, _) = get(&api, "/orders/elsewhere").await;
    assert_eq!(status, 200);
    assert_eq!(body, example_order("elsewhere"));
    assert!(cache.get("elsewhere").is_some());
    let (status, _, _) = get(&api, "/orders/nowhere").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_server_answers_on_its_socket() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    let (status, _) = app.client.get("/healthz").await.unwrap();
    assert_eq!(status, 200);
    let (status, body) = app.client.get("/readyz").await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, _) = app.client.get("/orders/unknown").await.unwrap();
    assert_eq!(status, 404);
    app.stop().await.unwrap();
}

/// Sends a request as written, however malformed or oversized (an HTTP
/// client would refuse to), and returns the status it got; the connection
/// is closed after it.
async fn raw_status(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    // "HTTP/1.1 404 Not Found": only the status line is needed.
    let line = answer.split(|&b| b == b'\r').next().unwrap_or_default();
    String::from_utf8_lossy(line)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status line"))
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_requests_get_4xx_never_5xx_or_a_hang_and_others_keep_being_served() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    let uid = crate::helpers::unique("ok");
    app.publish_order(&example_order(&uid)).await;
    app.wait_for_order(&uid).await;
    let addr = app.client.addr();

    // Idle and half-sent connections that never finish.
    let mut idle = Vec::new();
    for i in 0..200 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /orders/").await.unwrap();
        }
        idle.push(s);
    }

    let long = format!("/orders/{}", "a".repeat(8 * 1024));
    let huge = format!("/{}", "b".repeat(70 * 1024));
    type Case<'a> = (&'a str, String, Vec<(&'a str, String)>);
    let cases: Vec<Case> = vec![
        ("GET", long, vec![]),
        ("GET", huge, vec![]),
        (
            "GET",
            "/orders/%2e%2e%2f%2e%2e%2fetc%2fpasswd".into(),
            vec![],
        ),
        ("GET", "/orders/%00".into(), vec![]),
        ("GET", "/orders/%ZZ".into(), vec![]),
        ("GET", "/orders/a%20b".into(), vec![]),
        ("GET", "/orders/..".into(), vec![]),
        ("GET", "/getOrder?id=%E2%80%AE".into(), vec![]),
        ("GET", "/getOrder?id=a&id=b".into(), vec![]),
        ("GET", "/%2e%2e/%2e%2e/".into(), vec![]),
        (
            "GET",
            "/orders/x".into(),
            vec![("X-Big", "c".repeat(100 * 1024))],
        ),
        (
            "GET",
            "/orders/x".into(),
            (0..200).map(|_| ("X-Many", "d".into())).collect(),
        ),
        (
            "POST",
            format!("/orders/{uid}"),
            vec![("Content-Length", "5".into())],
        ),
        ("PUT", format!("/orders/{uid}"), vec![]),
        ("DELETE", format!("/orders/{uid}"), vec![]),
        ("PATCH", "/".into(), vec![]),
        ("OPTIONS", "/".into(), vec![]),
        ("TRACE", "/".into(), vec![]),
        ("BREW", "/".into(), vec![]),
    ];
    for (method, path, headers) in &cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            raw_status(addr, method, path, &headers),
        )
        .await
        .unwrap_or_else(|_| panic!("{method} {:.60} hung", path));
        let shown = &path[..path.len().min(60)];
        eprintln!("{method} {shown} -> {:?}", answer.as_ref().ok());
        match answer {
            Ok(status) => assert!(
                (400..500).contains(&status),
                "{method} {shown} answered {status}"
            ),
            // The server may close a grossly oversized request outright.
            Err(e) => assert!(
                path.len() > 60 * 1024 || !headers.is_empty(),
                "{method} {shown}: {e}"
            ),
        }
        // Someone else is still served, promptly.
        let (status, _) = tokio::time::timeout(
            Duration::from_secs(2),
            app.client.get(&format!("/orders/{uid}")),
        )
        .await
        .expect("a normal client is served while others misbehave")
        .unwrap();
        assert_eq!(status, 200);
    }
    let head = app
        .client
        .send(warp::http::Method::HEAD, &format!("/orders/{uid}"))
        .await
        .unwrap();
    assert_eq!(head.status, 200, "HEAD is served like GET");
    assert!(
        head.body.is_empty()
            && head.headers.get("content-type").is_some_and(|v| v
                .to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().starts_with("application/json")))
    );
    drop(idle);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_openapi_description_is_served() {
    let (api, _) = api_with(&[]);
    let res = warp::test::request()
        .path("/openapi.yaml")
        .reply(&router(api))
        .await;
    assert_eq!(res.status(), 200);
    let text = String::from_utf8(res.body().to_vec()).unwrap();
    for route in [
        "/orders/{order_uid}:",
        "/getOrder:",
        "/readyz:",
        "/metrics:",
        "/openapi.yaml:",
    ] {
        assert!(text.contains(route), "{route} is described");
    }
}
