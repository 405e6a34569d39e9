//! The HTTP API and web page, as a warp filter to mount anywhere.
//!
//! | route | answer |
//! |---|---|
//! | `GET /orders/{order_uid}` | 200 the order as JSON; 400 for an id that can never be valid; 404 for an unknown one |
//! | `GET /getOrder?id={order_uid}` | the same |
//! | `GET /orders` | 200 `{"orders": [ids, newest first]}`: the most recent orders |
//! | `GET /` | the web page; `/?id={order_uid}` opens that order |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 once the cache is restored and PostgreSQL and NATS answer, else 503 |
//! | `GET /metrics` | Prometheus text |
//! | `GET /status` | 200 JSON: the counts the page's live status strip shows |
//! | `GET /openapi.yaml` | the OpenAPI 3 description of these routes |
//!
//! Errors are JSON: `{"error": "not_found", "message": "..."}`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use warp::http::header::{self, HeaderMap, HeaderValue};
use warp::http::{Response, StatusCode};
use warp::{Filter, Rejection, Reply};

use crate::cache::Cache;
use crate::health::Readiness;
use crate::metrics::Metrics;
use crate::model::{OrderUid, Problem};
use crate::store::{Store, StoreError};

const INDEX_HTML: &str = include_str!("../static/index.html");
const APP_JS: &str = include_str!("../static/app.js");
const STYLE_CSS: &str = include_str!("../static/style.css");
const FAVICON_SVG: &str = include_str!("../static/favicon.svg");
const OPENAPI_YAML: &str = include_str!("../openapi.yaml");

/// Response header of an order answer: `hit` when it came from the cache,
/// `store` when from PostgreSQL (a miss).
pub const CACHE_HEADER: &str = "x-order-cache";

/// How long an id that PostgreSQL did not have is answered 404 from memory,
/// so a flood of unknown ids does not become a flood of queries.
const MISS_TTL: Duration = Duration::from_secs(1);
/// Most remembered misses; the memory is cleared when full.
const MISS_CAP: usize = 100_000;

/// Everything the routes need. Cheap to clone.
///
/// # Examples
///
/// ```
/// use order_cache::{router, Api, Cache, Metrics, Readiness};
/// use warp::Filter;
///
/// let api = Api::new(Cache::new(), Metrics::new(), Readiness::new());
/// // Mounted under a prefix, beside the host's own routes.
/// let app = warp::path("orders-api")
///     .and(router(api))
///     .or(warp::path("hello").map(|| "hi"));
/// # let _ = app;
/// ```
#[derive(Clone)]
pub struct Api(Arc<ApiInner>);

/// One allocation behind [`Api`]: each request clones a single `Arc`, not
/// one per field, so two worker threads do not bounce several shared
/// reference counts between them on every request.
#[derive(Clone)]
struct ApiInner {
    cache: Cache,
    store: Option<Lookups>,
    miss_deadline: Duration,
    metrics: Metrics,
    readiness: Readiness,
    misses: Arc<Mutex<HashMap<String, Instant>>>,
}

/// What a lookup in PostgreSQL found for one id: the order's response
/// bytes, nothing, or why it could not say.
type Found = Result<Option<Bytes>, Arc<StoreError>>;
type Answer = oneshot::Sender<Found>;

/// Cache misses, looked up in PostgreSQL together: one task takes every miss
/// queued while its previous query ran and asks for all of them in one
/// query, so a flood of unknown ids costs a query per batch, not per request.
/// Every waiter for an id gets the same answer, however many there are.
#[derive(Clone)]
struct Lookups {
    queue: mpsc::Sender<(OrderUid, Answer)>,
}

/// Most ids asked for in one query.
const LOOKUP_BATCH: usize = 512;

/// How long a cache miss may wait for PostgreSQL before it is answered 503
/// `unavailable`, unless [`Api::with_miss_deadline`] says otherwise.
pub const MISS_DEADLINE: Duration = Duration::from_secs(5);

impl Lookups {
    fn start(store: Store, cache: Cache) -> Lookups {
        let (queue, mut requests) = mpsc::channel::<(OrderUid, Answer)>(4 * LOOKUP_BATCH);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(LOOKUP_BATCH);
            // Ends when every Api clone, and so every sender, is gone.
            while requests.recv_many(&mut batch, LOOKUP_BATCH).await > 0 {
                // Waiters that gave up (their deadline passed) need no query.
                batch.retain(|(_, reply): &(OrderUid, Answer)| !reply.is_closed());
                if batch.is_empty() {
                    continue;
                }
                let ids: Vec<OrderUid> = batch.iter().map(|(id, _)| id.clone()).collect();
                let answers = Lookups::find(&store, &cache, &ids).await;
                for (id, reply) in batch.drain(..) {
                    let answer = match &answers {
                        Ok(found) => found.get(&id).cloned().unwrap_or(Ok(None)),
                        Err(e) => Err(e.clone()),
                    };
                    let _ = reply.send(answer);
                }
            }
        });
        Lookups { queue }
    }

    /// Looks the ids up, caches what it found, and returns each found id's
    /// answer (an id given twice is looked up and answered once).
    async fn find(
        store: &Store,
        cache: &Cache,
        ids: &[OrderUid],
    ) -> Result<HashMap<OrderUid, Found>, Arc<StoreError>> {
        let found = store.get_many(ids).await.map_err(Arc::new)?;
        let mut answers = HashMap::with_capacity(found.len());
        let mut fresh = Vec::with_capacity(found.len());
        for (uid, order) in found {
            let answer = match order {
                Ok(order) => {
                    let bytes = order.to_json();
                    fresh.push((uid.clone(), bytes.clone()));
                    Ok(Some(bytes))
                }
                Err(e) => Err(Arc::new(e)),
            };
            answers.insert(uid, answer);
        }
        cache.fill(fresh);
        Ok(answers)
    }

    async fn get(&self, uid: &OrderUid) -> Found {
        let (reply, answer) = oneshot::channel();
        let gone = || Arc::new(StoreError::Unavailable("lookup task stopped".into()));
        self.queue
            .send((uid.clone(), reply))
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

impl Api {
    /// Routes serving from `cache` alone.
    pub fn new(cache: Cache, metrics: Metrics, readiness: Readiness) -> Api {
        Api(Arc::new(ApiInner {
            cache,
            store: None,
            miss_deadline: MISS_DEADLINE,
            metrics,
            readiness,
            misses: Arc::default(),
        }))
    }

    /// Look up cache misses in PostgreSQL too, so that an order stored by
    /// another instance is served here as well (and cached). Misses arriving
    /// together are looked up in one query, by a task this spawns: call it
    /// inside a tokio runtime.
    pub fn with_store(mut self, store: Store) -> Api {
        let cache = self.0.cache.clone();
        Arc::make_mut(&mut self.0).store = Some(Lookups::start(store, cache));
        self
    }

    /// How long a cache miss may wait for PostgreSQL before it is answered
    /// 503 `unavailable` ([`MISS_DEADLINE`] unless set).
    pub fn with_miss_deadline(mut self, deadline: Duration) -> Api {
        Arc::make_mut(&mut self.0).miss_deadline = deadline;
        self
    }

    /// The order's response bytes, and whether they came from the cache.
    async fn lookup(&self, uid: &OrderUid) -> Result<Option<(Bytes, Source)>, Arc<StoreError>> {
        if let Some(bytes) = self.0.cache.get(uid.as_str()) {
            self.0.metrics.cache_hit();
            return Ok(Some((bytes, Source::Cache)));
        }
        self.0.metrics.cache_miss();
        let Some(store) = &self.0.store else {
            return Ok(None);
        };
        if self.missed_recently(uid) {
            return Ok(None);
        }
        let deadline = self.0.miss_deadline;
        let found = tokio::time::timeout(deadline, store.get(uid))
            .await
            .unwrap_or_else(|_| {
                Err(Arc::new(StoreError::Unavailable(format!(
                    "no answer within {deadline:?}"
                ))))
            })?;
        match found {
            Some(bytes) => Ok(Some((bytes, Source::Store))),
            None => {
                self.remember_miss(uid);
                Ok(None)
            }
        }
    }

    fn missed_recently(&self, uid: &OrderUid) -> bool {
        let misses = self.0.misses.lock().unwrap_or_else(|p| p.into_inner());
        misses
            .get(uid.as_str())
            .is_some_and(|at| at.elapsed() < MISS_TTL)
    }

    fn remember_miss(&self, uid: &OrderUid) {
        let mut misses = self.0.misses.lock().unwrap_or_else(|p| p.into_inner());
        if misses.len() >= MISS_CAP {
            misses.clear();
        }
        misses.insert(uid.as_str().to_owned(), Instant::now());
    }
}

/// Where an answered order came from, said in the `X-Order-Cache` header
/// (`hit` or `store`), so operators and tests can tell a cache that lost
/// orders from one that serves them.
#[derive(Debug, Clone, Copy)]
enum Source {
    Cache,
    Store,
}

impl Source {
    fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Source::Cache => "hit",
            Source::Store => "store",
        })
    }
}

/// Why a request failed, as the JSON error body says it.
#[derive(Debug)]
enum ApiError {
    InvalidId(Problem),
    NotFound(OrderUid),
    Unavailable(Arc<StoreError>),
    /// The stored order's rows do not add up; retrying will not help.
    Inconsistent(Arc<StoreError>),
}

impl warp::reject::Reject for ApiError {}

/// The JSON body of every error answer.
#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
}

/// All routes, with their error handling, security headers and metrics.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use order_cache::{router, Api, Cache, Metrics, OrderUid, Readiness};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let cache = Cache::new();
/// let id = OrderUid::parse("b563feb7b2b84b6test").unwrap();
/// cache.insert([(id, Bytes::from_static(br#"{"order_uid":"b563feb7b2b84b6test"}"#))]);
/// let routes = router(Api::new(cache, Metrics::new(), Readiness::new()));
///
/// let res = warp::test::request().path("/orders/b563feb7b2b84b6test").reply(&routes).await;
/// assert_eq!(res.status(), 200);
/// assert_eq!(res.headers()["x-content-type-options"], "nosniff");
///
/// let res = warp::test::request().path("/orders/no-such-order").reply(&routes).await;
/// assert_eq!(res.status(), 404);
/// assert_eq!(res.body(), r#"{"error":"not_found","message":"no order with id no-such-order"}"#);
/// # }
/// ```
pub fn router(api: Api) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    routes(api).recover(recover)
}

/// The routes alone, to mount beside a host's own: a request they match is
/// answered in full (errors included, as JSON, with the security headers,
/// counted in the metrics); anything else is rejected, so that
/// `routes(api).or(host)` and `host.or(routes(api))` both reach the host's
/// routes. End the whole with [`recover`] (or [`router`] does it for you).
///
/// # Examples
///
/// ```
/// use order_cache::{recover, routes, Api, Cache, Metrics, Readiness};
/// use warp::Filter;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let api = Api::new(Cache::new(), Metrics::new(), Readiness::new());
/// let host = warp::path("status").map(|| "host says hi");
/// // Mounted at the root, after the host's own routes.
/// let app = host.or(routes(api)).recover(recover);
///
/// let res = warp::test::request().path("/status").reply(&app).await;
/// assert_eq!(res.body(), "host says hi");
/// let res = warp::test::request().path("/healthz").reply(&app).await;
/// assert_eq!(res.status(), 200);
/// let res = warp::test::request().path("/orders/unknown").reply(&app).await;
/// assert_eq!(res.status(), 404);
/// # }
/// ```
pub fn routes(api: Api) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let metrics = api.0.metrics.clone();
    order(api.clone())
        .or(get_order(api.clone()))
        .or(page())
        .or(healthz())
        .or(readyz(api.clone()))
        .or(metrics_route(api.clone()))
        .or(status(api))
        .with(warp::reply::with::headers(security_headers()))
        .with(warp::log::custom(move |info| {
            metrics.http(
                route_label(info.path()),
                info.status().as_u16(),
                info.elapsed(),
            );
        }))
}

/// GET, and HEAD for the same routes (hyper drops the body of a HEAD answer).
fn get_or_head() -> impl Filter<Extract = (), Error = Rejection> + Copy {
    warp::get().or(warp::head()).unify()
}

fn with_api(api: Api) -> impl Filter<Extract = (Api,), Error = Infallible> + Clone {
    warp::any().map(move || api.clone())
}

/// `GET /orders/{order_uid}`, the id being the whole rest of the path, and
/// `GET /orders`, the recent list. `/orders/` is an empty id, not the list.
fn order(api: Api) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path("orders")
        .and(get_or_head())
        .and(warp::path::full())
        .and(warp::path::tail())
        .and(with_api(api))
        .and_then(
            |full: warp::path::FullPath, tail: warp::path::Tail, api: Api| async move {
                if tail.as_str().is_empty() && !full.as_str().ends_with('/') {
                    return Ok(recent(&api));
                }
                // A path segment arrives percent-encoded; the query string
                // of /getOrder is decoded too, so both name the same id.
                let Some(id) = percent_decode(tail.as_str()) else {
                    return Ok(ApiError::InvalidId(Problem::BadCharacter).response());
                };
                serve_order(&api, &id).await
            },
        )
}

/// `%XX` escapes decoded; `None` for a malformed escape or bytes that are
/// not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[derive(Deserialize)]
struct IdQuery {
    id: Option<String>,
}

/// `GET /getOrder?id={order_uid}`.
fn get_order(api: Api) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path("getOrder")
        .and(warp::path::end())
        .and(get_or_head())
        .and(warp::query::<IdQuery>())
        .and(with_api(api))
        .and_then(|q: IdQuery, api: Api| async move {
            serve_order(&api, q.id.as_deref().unwrap_or("")).await
        })
}

/// The order's answer: the order, or a JSON error. A request that reached
/// this route is answered here, errors included, rather than rejected: a
/// rejection would fall through to the host's routes.
async fn serve_order(api: &Api, id: &str) -> Result<Response<Bytes>, Rejection> {
    let uid = match OrderUid::parse(id) {
        Ok(uid) => uid,
        Err(p) => return Ok(ApiError::InvalidId(p).response()),
    };
    Ok(match api.lookup(&uid).await {
        Ok(Some((bytes, source))) => {
            let mut response = json_response(StatusCode::OK, bytes);
            response.headers_mut().insert(CACHE_HEADER, source.header());
            response
        }
        Ok(None) => ApiError::NotFound(uid).response(),
        Err(e) if e.is_transient() => ApiError::Unavailable(e).response(),
        Err(e) => ApiError::Inconsistent(e).response(),
    })
}

#[derive(Serialize)]
struct Recent<'a> {
    orders: Vec<&'a str>,
}

/// The most recent ids, newest first.
fn recent(api: &Api) -> Response<Bytes> {
    let snapshot = api.0.cache.snapshot();
    let body = to_json(&Recent {
        orders: snapshot.recent().collect(),
    });
    json_response(StatusCode::OK, body)
}

/// The page and its assets. `/?id=…` is handled by the page's script.
fn page() -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let index = warp::path::end().and(warp::path::full()).and(query).map(
        |full: warp::path::FullPath, query: String| {
            // Mounted under a prefix, `/prefix` must become `/prefix/` so
            // the page's relative URLs resolve inside the prefix.
            if full.as_str().ends_with('/') {
                static_reply(INDEX_HTML, "text/html; charset=utf-8")
            } else {
                let mut location = format!("{}/", full.as_str());
                if location.starts_with("//") {
                    location = "/".into();
                }
                // `/prefix?id=…` is a link to one order: keep what it asks.
                if !query.is_empty() {
                    location.push('?');
                    location.push_str(&query);
                }
                Response::builder()
                    .status(StatusCode::PERMANENT_REDIRECT)
                    .header(header::LOCATION, location)
                    .body(Bytes::new())
                    .unwrap_or_default()
            }
        },
    );
    let js = warp::path("app.js")
        .and(warp::path::end())
        .map(|| static_reply(APP_JS, "text/javascript; charset=utf-8"));
    let css = warp::path("style.css")
        .and(warp::path::end())
        .map(|| static_reply(STYLE_CSS, "text/css; charset=utf-8"));
    let icon = warp::path("favicon.svg")
        .and(warp::path::end())
        .map(|| static_reply(FAVICON_SVG, "image/svg+xml"));
    let spec = warp::path("openapi.yaml")
        .and(warp::path::end())
        .map(|| static_reply(OPENAPI_YAML, "application/yaml"));
    // The method is checked after the path, here and in every route, so
    // that a path nobody serves is 404 whatever the method, and 405 means
    // the path exists.
    index
        .or(js)
        .unify()
        .or(css)
        .unify()
        .or(icon)
        .unify()
        .or(spec)
        .unify()
        .and(get_or_head())
}

fn healthz() -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path("healthz")
        .and(warp::path::end())
        .and(get_or_head())
        .map(|| json_response(StatusCode::OK, Bytes::from_static(b"{\"status\":\"ok\"}")))
}

#[derive(Serialize)]
struct ReadyBody {
    ready: bool,
    failing: Vec<&'static str>,
}

fn readyz(api: Api) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path("readyz")
        .and(warp::path::end())
        .and(get_or_head())
        .and(with_api(api))
        .then(|api: Api| async move {
            let failing = api.0.readiness.failing().await;
            api.0.metrics.ready(failing.is_empty());
            let status = if failing.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = ReadyBody {
                ready: failing.is_empty(),
                failing,
            };
            json_response(status, to_json(&body))
        })
}

fn metrics_route(api: Api) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path("metrics")
        .and(warp::path::end())
        .and(get_or_head())
        .and(with_api(api))
        .then(|api: Api| async move {
            api.0.metrics.cache(&api.0.cache.snapshot());
            // Checked at each scrape, so the gauge is fresh even where
            // nothing probes /readyz.
            let ready = api.0.readiness.failing().await.is_empty();
            api.0.metrics.ready(ready);
            Response::builder()
                .header(
                    header::CONTENT_TYPE,
                    // What prometheus-client writes: OpenMetrics (it ends
                    // in `# EOF`), not the older Prometheus text format.
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
                .body(api.0.metrics.render())
                .unwrap_or_default()
        })
}

/// `GET /status`: what the page's status strip shows. Atomics only, no
/// query: the page polls it every few seconds.
fn status(api: Api) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path("status")
        .and(warp::path::end())
        .and(get_or_head())
        .and(with_api(api))
        .map(|api: Api| {
            api.0.metrics.cache(&api.0.cache.snapshot());
            json_response(StatusCode::OK, to_json(&api.0.metrics.status()))
        })
}

impl ApiError {
    /// The JSON error answer for this failure.
    fn response(&self) -> Response<Bytes> {
        let (status, error, message) = match self {
            ApiError::InvalidId(p) => (
                StatusCode::BAD_REQUEST,
                "invalid_id",
                format!("an order id {p}"),
            ),
            ApiError::NotFound(uid) => (
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no order with id {uid}"),
            ),
            ApiError::Unavailable(e) => {
                tracing::warn!(error = %e, "order lookup failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the order is not cached and storage is unavailable; retry later".into(),
                )
            }
            ApiError::Inconsistent(e) => {
                tracing::error!(error = %e, "stored order cannot be served");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "inconsistent",
                    e.to_string(),
                )
            }
        };
        json_response(status, to_json(&ErrorBody { error, message }))
    }
}

/// Turns a rejection into a JSON error answer (`no_route`,
/// `method_not_allowed`, `invalid_query`, `bad_request`), with the same
/// security headers as every other answer. [`router`] ends with it; a host
/// that mounts [`routes`] beside its own calls it once, at the top, after
/// its own routes (or from its own `recover` for the rejections it does not
/// know).
///
/// # Examples
///
/// ```
/// use order_cache::{recover, routes, Api, Cache, Metrics, Readiness};
/// use warp::Filter;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let api = Api::new(Cache::new(), Metrics::new(), Readiness::new());
/// let app = routes(api)
///     .or(warp::path("hello").map(|| "hi"))
///     .recover(recover);
///
/// let res = warp::test::request().path("/hello").reply(&app).await;
/// assert_eq!(res.body(), "hi");
/// let res = warp::test::request().path("/nowhere").reply(&app).await;
/// assert_eq!(res.status(), 404);
/// assert_eq!(res.body(), r#"{"error":"no_route","message":"no such route"}"#);
/// # }
/// ```
pub async fn recover(rejection: Rejection) -> Result<Response<Bytes>, Infallible> {
    let mut response = if let Some(e) = rejection.find::<ApiError>() {
        e.response()
    } else {
        let (status, error, message) = if rejection.is_not_found() {
            (StatusCode::NOT_FOUND, "no_route", "no such route".into())
        } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
            (StatusCode::BAD_REQUEST, "invalid_query", e.to_string())
        } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "only GET and HEAD are served".into(),
            )
        } else {
            (
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("{rejection:?}"),
            )
        };
        json_response(status, to_json(&ErrorBody { error, message }))
    };
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        // RFC 9110: a 405 lists the methods the resource does support.
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    response.headers_mut().extend(security_headers());
    Ok(response)
}

fn to_json(value: &impl Serialize) -> Bytes {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .unwrap_or_default()
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn static_reply(body: &'static str, content_type: &'static str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(body.as_bytes()));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Sent with every answer: orders are untrusted, so the page may run only
/// its own script, and nothing may be sniffed into HTML.
fn security_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h
}

/// Every label [`route_label`] gives: the `route` label's values.
pub(crate) const ROUTE_LABELS: [&str; 10] = [
    "/orders/{order_uid}",
    "/orders",
    "/getOrder",
    "/healthz",
    "/readyz",
    "/metrics",
    "/status",
    "/assets",
    "/",
    "other",
];

/// A bounded set of labels, whatever paths clients send.
fn route_label(path: &str) -> &'static str {
    let mut segments = path.trim_end_matches('/').rsplit('/');
    let last = segments.next().unwrap_or("");
    let before = segments.next().unwrap_or("");
    match (before, last) {
        ("orders", _) => "/orders/{order_uid}",
        (_, "orders") => "/orders",
        (_, "getOrder") => "/getOrder",
        (_, "healthz") => "/healthz",
        (_, "readyz") => "/readyz",
        (_, "metrics") => "/metrics",
        (_, "status") => "/status",
        (_, "app.js" | "style.css" | "favicon.svg" | "openapi.yaml") => "/assets",
        (_, "") => "/",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::{route_label, ROUTE_LABELS};

    #[test]
    fn route_labels_are_bounded() {
        assert_eq!(route_label("/orders/abc"), "/orders/{order_uid}");
        assert_eq!(route_label("/api/orders/abc"), "/orders/{order_uid}");
        assert_eq!(route_label("/orders"), "/orders");
        assert_eq!(route_label("/"), "/");
        assert_eq!(route_label("/getOrder"), "/getOrder");
        assert_eq!(route_label("/x/y/z"), "other");
    }

    #[test]
    fn every_route_label_has_its_latency_histogram() {
        let paths = [
            "/orders/a",
            "/orders",
            "/getOrder",
            "/healthz",
            "/readyz",
            "/metrics",
            "/status",
            "/app.js",
            "/style.css",
            "/favicon.svg",
            "/openapi.yaml",
            "/",
            "/x/y",
        ];
        for path in paths {
            let label = route_label(path);
            assert!(ROUTE_LABELS.contains(&label), "{path} -> {label}");
        }
    }
}
