//! What every answer shares: JSON bodies, the error answers, the security
//! headers, and [`recover`] for rejections.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use warp::http::header::{self, HeaderMap, HeaderValue};
use warp::http::{Response, StatusCode};
use warp::Rejection;

use crate::model::{OrderUid, Problem};
use crate::report::Report;
use crate::store::StoreError;

/// Why a request failed, as the JSON error body says it.
#[derive(Debug)]
pub(super) enum ApiError {
    InvalidId(Problem),
    NotFound(OrderUid),
    Unavailable(Arc<StoreError>),
    /// The stored order's rows do not add up; retrying will not help.
    Inconsistent(Arc<StoreError>),
}

impl warp::reject::Reject for ApiError {}

/// The JSON body of every error answer.
#[derive(Serialize)]
pub(super) struct ErrorBody {
    pub(super) error: &'static str,
    pub(super) message: String,
}

impl ApiError {
    /// The JSON error answer for this failure.
    pub(super) fn response(&self) -> Response<Bytes> {
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
                tracing::warn!(error = %Report(&e), "order lookup failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the order is not cached and storage is unavailable; retry later".into(),
                )
            }
            ApiError::Inconsistent(e) => {
                tracing::error!(error = %Report(&e), "stored order cannot be served");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "inconsistent",
                    e.to_string(),
                )
            }
        };
        error_response(status, &ErrorBody { error, message })
    }
}

/// Turns a rejection into a JSON error answer (`unauthorized`, with
/// `WWW-Authenticate: Bearer`; `no_route`, `method_not_allowed`,
/// `invalid_query`, `bad_request`), with the same
/// security headers as every other answer. [`router`](crate::router) ends with it; a host
/// that mounts [`routes`](crate::routes) beside its own calls it once, at the top, after
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
            // Someone else's rejection (a host's own, which its own
            // recover should have answered): said without its details,
            // which are the host's.
            (
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request was rejected".into(),
            )
        };
        error_response(status, &ErrorBody { error, message })
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

/// An error answer: its status and the JSON body.
pub(super) fn error_response(status: StatusCode, body: &ErrorBody) -> Response<Bytes> {
    json_response(status, to_json(body))
}

pub(super) fn to_json(value: &impl Serialize) -> Bytes {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .unwrap_or_default()
}

pub(super) fn json_response(status: StatusCode, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub(super) fn static_reply(body: &'static str, content_type: &'static str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(body.as_bytes()));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Sent with every answer: orders are untrusted, so the page may run only
/// its own script, and nothing may be sniffed into HTML.
pub(super) fn security_headers() -> HeaderMap {
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
