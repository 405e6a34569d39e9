//! What each route answers, once its filter has matched the request.

use bytes::Bytes;
use serde::Serialize;
use warp::http::header;
use warp::http::{Response, StatusCode};

use super::recent::Recent;
use super::reply::{json_response, static_reply, to_json, ApiError};
use super::{Api, CACHE_HEADER};
use crate::model::{OrderUid, Problem};

const INDEX_HTML: &str = include_str!("../../static/index.html");
pub(super) const APP_JS: &str = include_str!("../../static/app.js");
pub(super) const STYLE_CSS: &str = include_str!("../../static/style.css");
pub(super) const FAVICON_SVG: &str = include_str!("../../static/favicon.svg");
pub(super) const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// `GET /orders/{order_uid}`: `rest` is the path's rest, still
/// percent-encoded.
pub(super) async fn order_path(api: &Api, rest: &str) -> Response<Bytes> {
    // A path segment arrives percent-encoded; the query string of /getOrder
    // is decoded too, so both name the same id.
    match percent_decode(rest) {
        Some(id) => order(api, &id).await,
        None => ApiError::InvalidId(Problem::BadCharacter).response(),
    }
}

/// The order's answer: the order, or a JSON error. A request that reached
/// this route is answered here, errors included, rather than rejected: a
/// rejection would fall through to the host's routes.
pub(super) async fn order(api: &Api, id: &str) -> Response<Bytes> {
    let uid = match OrderUid::parse(id) {
        Ok(uid) => uid,
        Err(p) => return ApiError::InvalidId(p).response(),
    };
    match api.0.lookup.get(&uid).await {
        Ok(Some((bytes, source))) => {
            let mut response = json_response(StatusCode::OK, bytes);
            response.headers_mut().insert(CACHE_HEADER, source.header());
            response
        }
        Ok(None) => ApiError::NotFound(uid).response(),
        Err(e) if e.is_transient() => ApiError::Unavailable(e).response(),
        Err(e) => ApiError::Inconsistent(e).response(),
    }
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

/// The most recent ids, newest first, with a summary of each.
pub(super) fn recent(api: &Api) -> Response<Bytes> {
    let snapshot = api.0.lookup.cache().snapshot();
    json_response(StatusCode::OK, to_json(&Recent::of(&snapshot)))
}

/// The page at `/`. Mounted under a prefix, `/prefix` must become
/// `/prefix/` so the page's relative URLs resolve inside the prefix; a
/// query (`/prefix?id=…`, a link to one order) is kept.
pub(super) fn index(full: warp::path::FullPath, query: String) -> Response<Bytes> {
    if full.as_str().ends_with('/') {
        return static_reply(INDEX_HTML, "text/html; charset=utf-8");
    }
    let mut location = format!("{}/", full.as_str());
    if location.starts_with("//") {
        location = "/".into();
    }
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

pub(super) fn healthz() -> Response<Bytes> {
    json_response(StatusCode::OK, Bytes::from_static(b"{\"status\":\"ok\"}"))
}

#[derive(Serialize)]
struct ReadyBody {
    ready: bool,
    failing: Vec<&'static str>,
}

/// 200 when every dependency answers and the cache is restored, else 503
/// naming what fails.
pub(super) async fn readyz(api: Api) -> Response<Bytes> {
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
}

pub(super) async fn metrics(api: Api) -> Response<Bytes> {
    api.0.metrics.cache(&api.0.lookup.cache().snapshot());
    // Checked at each scrape, so the gauge is fresh even where nothing
    // probes /readyz.
    let ready = api.0.readiness.failing().await.is_empty();
    api.0.metrics.ready(ready);
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            // What prometheus-client writes: OpenMetrics (it ends in
            // `# EOF`), not the older Prometheus text format.
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
        .body(Bytes::from(api.0.metrics.render()))
        .unwrap_or_default()
}

/// What the page's status strip shows. Atomics only, no query: the page
/// polls it every few seconds.
pub(super) fn status(api: Api) -> Response<Bytes> {
    api.0.metrics.cache(&api.0.lookup.cache().snapshot());
    json_response(StatusCode::OK, to_json(&api.0.metrics.status()))
}
