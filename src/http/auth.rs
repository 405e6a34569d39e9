//! Who may be served: the bearer-token check each closed route makes after
//! its path and method matched. A refused request is answered 401 by the
//! route itself, not rejected: a rejection would fall through to a host's
//! routes mounted after ours, and warp's log would count it as a 500.

use std::convert::Infallible;
use std::future::{ready, Future};

use bytes::Bytes;
use warp::http::header::{self, HeaderValue};
use warp::http::{Response, StatusCode};
use warp::{Filter, Reply};

use super::reply::{error_response, ErrorBody};
use crate::tokens::{BearerTokens, Refusal};

/// A request without one of the tokens a closed route takes.
#[derive(Debug)]
pub(super) struct Unauthorized(Refusal);

/// Whether a request may have a closed route's answer.
pub(super) type Access = Result<(), Unauthorized>;

impl Unauthorized {
    /// 401 with the challenge of RFC 6750: `invalid_token` when a
    /// credential was sent and refused, none when there was none.
    pub(super) fn response(&self) -> Response<Bytes> {
        let (challenge, message) = match self.0 {
            Refusal::Missing => (
                r#"Bearer realm="order_cache""#,
                "this route needs an access token: send Authorization: Bearer <token>",
            ),
            Refusal::Invalid => (
                r#"Bearer realm="order_cache", error="invalid_token""#,
                "the access token was refused",
            ),
        };
        let mut response = error_response(
            StatusCode::UNAUTHORIZED,
            &ErrorBody {
                error: "unauthorized",
                message: message.into(),
            },
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        response
    }
}

/// Whether `tokens` admit the request. Only the `Authorization` header is
/// read: a token in the query string would end up in logs and browser
/// histories. With no tokens the header is not read at all.
pub(super) fn access(
    tokens: BearerTokens,
) -> impl Filter<Extract = (Access,), Error = Infallible> + Clone {
    let open = tokens.is_empty();
    // `not_found` allocates nothing: with no tokens a request costs one
    // branch here.
    let no_tokens = warp::any().and_then(move || {
        ready(if open {
            Ok(Ok(()))
        } else {
            Err(warp::reject::not_found())
        })
    });
    // The header as bytes: no copy, and no 400 for a header that is not
    // text.
    let authorization = warp::header::value("authorization")
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    let checked = authorization.map(move |authorization: Option<HeaderValue>| {
        tokens
            .check(authorization.as_ref().map(HeaderValue::as_bytes))
            .map_err(Unauthorized)
    });
    no_tokens.or(checked).unify()
}

/// The route's answer when `access` allows it (`answer` is not run
/// otherwise), else 401; either way marked `Cache-Control: no-store`: an
/// order's personal data must not outlive the tab in a browser's disk
/// cache, nor be kept by a proxy.
pub(super) async fn unless_refused<R: Reply>(
    access: Access,
    answer: impl Future<Output = R>,
) -> warp::reply::Response {
    let mut response = match access {
        Ok(()) => answer.await.into_response(),
        Err(refused) => refused.response().into_response(),
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
