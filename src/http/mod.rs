//! The HTTP API and web page, as a warp filter to mount anywhere.
//!
//! | route | answer |
//! |---|---|
//! | `GET /orders/{order_uid}` | 200 the order as JSON; 400 for an id that can never be valid; 404 for an unknown one |
//! | `GET /getOrder?id={order_uid}` | the same |
//! | `GET /orders` | 200 `{"orders": [ids, newest first], "recent": [{order_uid, date_created, item_count, amount, currency}]}`: the most recent orders, each with a summary (the id alone when its order is no longer cached); no route when [`Api::with_recent_orders`] turns it off |
//! | `GET /` | the web page; `/?id={order_uid}` opens that order |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 once the cache is restored and PostgreSQL and NATS answer, else 503 |
//! | `GET /metrics` | Prometheus text |
//! | `GET /status` | 200 JSON: the counts the page's live status strip shows |
//! | `GET /openapi.yaml` | the OpenAPI 3 description of these routes |
//!
//! Errors are JSON: `{"error": "not_found", "message": "..."}`.
//!
//! With [`Api::with_tokens`], the routes that hold or describe orders
//! (`/orders/…`, `/getOrder`, `/orders`, `/status`, `/metrics`) answer 401
//! `unauthorized` with `WWW-Authenticate: Bearer` unless the request
//! carries `Authorization: Bearer <token>`; the health checks and the page
//! with its files (which hold no order) stay open.

mod auth;
mod filters;
mod handlers;
mod lookup;
mod recent;
mod reply;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use warp::{Filter, Rejection, Reply};

use crate::cache::Cache;
use crate::health::Readiness;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tokens::BearerTokens;
use lookup::Lookup;
pub use reply::recover;

/// Response header of an order answer: `hit` when it came from the cache,
/// `store` when from PostgreSQL (a miss).
pub const CACHE_HEADER: &str = "x-order-cache";

/// How long a cache miss may wait for PostgreSQL before it is answered 503
/// `unavailable`, unless [`Api::with_miss_deadline`] says otherwise.
pub const MISS_DEADLINE: Duration = Duration::from_secs(5);

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
    lookup: Lookup,
    metrics: Metrics,
    readiness: Readiness,
    /// What the closed routes take; none: they are open.
    tokens: BearerTokens,
    /// What `/metrics` takes instead of `tokens`, when set.
    metrics_tokens: Option<BearerTokens>,
    /// Whether `GET /orders` lists the recent orders or is no route.
    recent_orders: bool,
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
            lookup: Lookup::new(cache, metrics.clone(), MISS_DEADLINE),
            metrics,
            readiness,
            tokens: BearerTokens::none(),
            metrics_tokens: None,
            recent_orders: true,
        }))
    }

    /// Serve the routes that hold or describe orders (`/orders/…`,
    /// `/getOrder`, `/orders`, `/status`, and `/metrics` unless
    /// [`Api::with_metrics_tokens`] gives it its own) only to requests
    /// carrying `Authorization: Bearer <one of these>`; the route answers
    /// others itself, 401 `unauthorized` with `WWW-Authenticate: Bearer`
    /// (not a rejection, which would fall through to a host's routes). The
    /// health checks and the page stay open. [`BearerTokens::none`] (the
    /// default) opens every route.
    ///
    /// # Examples
    ///
    /// ```
    /// use order_cache::{router, Api, BearerTokens, Cache, Metrics, Readiness};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let tokens = BearerTokens::parse("old-token-0123456789,new-token-0123456789").unwrap();
    /// let api = Api::new(Cache::new(), Metrics::new(), Readiness::new()).with_tokens(tokens);
    /// let routes = router(api);
    ///
    /// let res = warp::test::request().path("/orders/abc").reply(&routes).await;
    /// assert_eq!(res.status(), 401);
    /// assert_eq!(res.headers()["www-authenticate"], r#"Bearer realm="order_cache""#);
    /// let res = warp::test::request()
    ///     .path("/orders/abc")
    ///     .header("authorization", "Bearer new-token-0123456789")
    ///     .reply(&routes)
    ///     .await;
    /// assert_eq!(res.status(), 404, "admitted: there is no such order");
    /// let res = warp::test::request().path("/healthz").reply(&routes).await;
    /// assert_eq!(res.status(), 200);
    /// # }
    /// ```
    pub fn with_tokens(mut self, tokens: BearerTokens) -> Api {
        Arc::make_mut(&mut self.0).tokens = tokens;
        self
    }

    /// `/metrics` takes these tokens, and not those of
    /// [`Api::with_tokens`]: a scraper's token opens no order. Without
    /// this, or with [`BearerTokens::none`], `/metrics` takes the same
    /// tokens as the other routes (never none while they have some).
    pub fn with_metrics_tokens(mut self, tokens: BearerTokens) -> Api {
        Arc::make_mut(&mut self.0).metrics_tokens = Some(tokens);
        self
    }

    /// Whether `GET /orders` lists the most recent ids (the default) or is
    /// no route at all (404 `no_route`), for a deployment where reading an
    /// order should need its id.
    pub fn with_recent_orders(mut self, on: bool) -> Api {
        Arc::make_mut(&mut self.0).recent_orders = on;
        self
    }

    /// Look up cache misses in PostgreSQL too, so that an order stored by
    /// another instance is served here as well (and cached). Misses arriving
    /// together are looked up in one query, by a task that the first miss
    /// starts on the runtime serving it.
    pub fn with_store(mut self, store: Store) -> Api {
        let inner = Arc::make_mut(&mut self.0);
        inner.lookup = inner.lookup.clone().with_store(store);
        self
    }

    /// How long a cache miss may wait for PostgreSQL before it is answered
    /// 503 `unavailable` ([`MISS_DEADLINE`] unless set).
    pub fn with_miss_deadline(mut self, deadline: Duration) -> Api {
        let inner = Arc::make_mut(&mut self.0);
        inner.lookup = inner.lookup.clone().with_deadline(deadline);
        self
    }
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
    let all = filters::order_by_path(api.clone())
        .or(filters::recent(api.clone()))
        .or(filters::get_order(api.clone()))
        .or(filters::page())
        .or(filters::healthz())
        .or(filters::readyz(api.clone()))
        .or(filters::metrics(api.clone()))
        .or(filters::status(api));
    answered(metrics, all)
}

/// The order lookup alone: `GET /orders/{order_uid}` and
/// `GET /getOrder?id={order_uid}`, answered as by [`routes`] (the token
/// check of [`Api::with_tokens`], the security headers, the metrics), any
/// other request rejected. With [`recent_orders`], for a host that mounts
/// only what it wants, behind its own access check if it has one.
///
/// # Examples
///
/// A host that knows its users: the lookup behind its own check, and no
/// listing, page or metrics of the crate's.
///
/// ```
/// use order_cache::{order_lookup, recover, Api, Cache, Metrics, Readiness};
/// use warp::Filter;
///
/// #[derive(Debug)]
/// struct NotSignedIn;
/// impl warp::reject::Reject for NotSignedIn {}
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // The host's own check: here a session cookie it would verify.
/// let signed_in = warp::cookie::optional::<String>("session")
///     .and_then(|session: Option<String>| async move {
///         match session {
///             Some(s) if s == "valid-session" => Ok(()),
///             _ => Err(warp::reject::custom(NotSignedIn)),
///         }
///     })
///     .untuple_one();
/// let api = Api::new(Cache::new(), Metrics::new(), Readiness::new());
/// let app = signed_in
///     .and(order_lookup(api))
///     .recover(|rejection: warp::Rejection| async move {
///         if rejection.find::<NotSignedIn>().is_some() {
///             let reply = warp::reply::with_status("sign in first", warp::http::StatusCode::UNAUTHORIZED);
///             return Ok(warp::reply::Reply::into_response(reply));
///         }
///         recover(rejection).await.map(warp::reply::Reply::into_response)
///     });
///
/// let res = warp::test::request().path("/orders/abc").reply(&app).await;
/// assert_eq!(res.status(), 401);
/// let res = warp::test::request()
///     .path("/orders/abc")
///     .header("cookie", "session=valid-session")
///     .reply(&app)
///     .await;
/// assert_eq!(res.status(), 404, "signed in: there is no such order");
/// let res = warp::test::request()
///     .path("/orders")
///     .header("cookie", "session=valid-session")
///     .reply(&app)
///     .await;
/// assert_eq!(res.status(), 404, "no listing mounted");
/// # }
/// ```
pub fn order_lookup(api: Api) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let metrics = api.0.metrics.clone();
    let lookup = filters::order_by_path(api.clone()).or(filters::get_order(api));
    answered(metrics, lookup)
}

/// The listing alone: `GET /orders`, the most recent ids, newest first,
/// answered as by [`routes`]; see [`order_lookup`].
pub fn recent_orders(api: Api) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let metrics = api.0.metrics.clone();
    answered(metrics, filters::recent(api))
}

/// `filter`'s answers with the security headers, counted in `metrics`.
fn answered<F, R>(
    metrics: Metrics,
    filter: F,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone
where
    F: Filter<Extract = (R,), Error = Rejection> + Clone + Send + Sync + 'static,
    R: Reply,
{
    filter
        .with(warp::reply::with::headers(reply::security_headers()))
        .with(warp::log::custom(move |info| {
            metrics.http(
                route_label(info.path()),
                info.status().as_u16(),
                info.elapsed(),
            );
        }))
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
