//! Which request each route takes. The method is checked after the path, in
//! every route, so that a path nobody serves is 404 whatever the method,
//! and 405 means the path exists.
//!
//! A closed route (one that holds or describes orders) checks the access
//! token after its path and method: an unknown path is still 404, a wrong
//! method still 405, and only a request that would be served is asked for a
//! token.

use std::convert::Infallible;
use std::future::ready;

use serde::Deserialize;
use warp::path::{FullPath, Tail};
use warp::{Filter, Rejection, Reply};

use super::auth::{access, unless_refused, Access};
use super::handlers::{self, APP_JS, FAVICON_SVG, OPENAPI_YAML, STYLE_CSS};
use super::reply::static_reply;
use super::Api;

/// GET, and HEAD for the same routes (hyper drops the body of a HEAD answer).
fn get_or_head() -> impl Filter<Extract = (), Error = Rejection> + Copy {
    warp::get().or(warp::head()).unify()
}

fn with_api(api: Api) -> impl Filter<Extract = (Api,), Error = Infallible> + Clone {
    warp::any().map(move || api.clone())
}

/// Whether a path under `/orders` is the list itself: `/orders`, not
/// `/orders/` (an empty id).
fn is_list(full: &FullPath, tail: &Tail) -> bool {
    tail.as_str().is_empty() && !full.as_str().ends_with('/')
}

/// `GET /orders/{order_uid}`, the id being the whole rest of the path.
/// `/orders/` is an empty id; `/orders` is the list's, not this route's.
pub(super) fn order_by_path(
    api: Api,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let tokens = api.0.tokens.clone();
    warp::path("orders")
        .and(warp::path::full())
        .and(warp::path::tail())
        .and_then(|full: FullPath, tail: Tail| {
            ready(if is_list(&full, &tail) {
                Err(warp::reject::not_found())
            } else {
                Ok(tail)
            })
        })
        .and(get_or_head())
        .and(access(tokens))
        .and(with_api(api))
        .then(|tail: Tail, access: Access, api: Api| {
            unless_refused(access, async move {
                handlers::order_path(&api, tail.as_str()).await
            })
        })
}

/// `GET /orders`, the recent list: no route at all when the [`Api`] has
/// it turned off.
pub(super) fn recent(api: Api) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let (tokens, on) = (api.0.tokens.clone(), api.0.recent_orders);
    warp::path("orders")
        .and(warp::path::full())
        .and(warp::path::tail())
        .and_then(move |full: FullPath, tail: Tail| {
            ready(if on && is_list(&full, &tail) {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            })
        })
        .untuple_one()
        .and(get_or_head())
        .and(access(tokens))
        .and(with_api(api))
        .then(|access: Access, api: Api| {
            unless_refused(access, async move { handlers::recent(&api) })
        })
}

#[derive(Deserialize)]
struct IdQuery {
    id: Option<String>,
}

/// `GET /getOrder?id={order_uid}`.
pub(super) fn get_order(
    api: Api,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let tokens = api.0.tokens.clone();
    warp::path("getOrder")
        .and(warp::path::end())
        .and(get_or_head())
        .and(access(tokens))
        .and(warp::query::<IdQuery>())
        .and(with_api(api))
        .then(|access: Access, q: IdQuery, api: Api| {
            unless_refused(access, async move {
                handlers::order(&api, q.id.as_deref().unwrap_or("")).await
            })
        })
}

/// The page and its assets. `/?id=…` is handled by the page's script.
pub(super) fn page() -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let index = warp::path::end()
        .and(warp::path::full())
        .and(query)
        .map(handlers::index);
    let asset = |name: &'static str, body: &'static str, content_type: &'static str| {
        warp::path(name)
            .and(warp::path::end())
            .map(move || static_reply(body, content_type))
    };
    index
        .or(asset("app.js", APP_JS, "text/javascript; charset=utf-8"))
        .unify()
        .or(asset("style.css", STYLE_CSS, "text/css; charset=utf-8"))
        .unify()
        .or(asset("favicon.svg", FAVICON_SVG, "image/svg+xml"))
        .unify()
        .or(asset("openapi.yaml", OPENAPI_YAML, "application/yaml"))
        .unify()
        .and(get_or_head())
}

/// `GET /healthz`.
pub(super) fn healthz() -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path("healthz")
        .and(warp::path::end())
        .and(get_or_head())
        .map(handlers::healthz)
}

/// `GET /readyz`.
pub(super) fn readyz(api: Api) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path("readyz")
        .and(warp::path::end())
        .and(get_or_head())
        .and(with_api(api))
        .then(handlers::readyz)
}

/// `GET /metrics`, with its own tokens when the [`Api`] has them.
pub(super) fn metrics(api: Api) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    // No metrics tokens at all is "the same as the API's", not "open".
    let tokens = api
        .0
        .metrics_tokens
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| api.0.tokens.clone());
    warp::path("metrics")
        .and(warp::path::end())
        .and(get_or_head())
        .and(access(tokens))
        .and(with_api(api))
        .then(|access: Access, api: Api| unless_refused(access, handlers::metrics(api)))
}

/// `GET /status`.
pub(super) fn status(api: Api) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let tokens = api.0.tokens.clone();
    warp::path("status")
        .and(warp::path::end())
        .and(get_or_head())
        .and(access(tokens))
        .and(with_api(api))
        .then(|access: Access, api: Api| {
            unless_refused(access, async move { handlers::status(api) })
        })
}
