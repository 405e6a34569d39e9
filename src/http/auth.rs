//! Who may be served: the bearer-token check each closed route makes after
//! its path and method matched, rejecting with [`Unauthorized`] for
//! [`recover`](super::recover) to answer 401.

use bytes::Bytes;
use warp::http::header::{self, HeaderValue};
use warp::http::{Response, StatusCode};
use warp::{Filter, Rejection};

use super::reply::{error_response, ErrorBody};
use crate::tokens::{BearerTokens, Refusal};

/// A request without one of the tokens a closed route takes.
#[derive(Debug)]
pub(super) struct Unauthorized(Refusal);

impl warp::reject::Reject for Unauthorized {}

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

/// Passes a request that `tokens` admit, rejects any other with
/// [`Unauthorized`]. Only the `Authorization` header is read: a token in
/// the query string would end up in logs and browser histories.
pub(super) fn authorized(
    tokens: BearerTokens,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    // The header as bytes: no copy, and no 400 for a header that is not
    // text, which routes without tokens never read.
    let authorization = warp::header::value("authorization")
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    authorization
        .and_then(move |authorization: Option<HeaderValue>| {
            let checked = tokens
                .check(authorization.as_ref().map(HeaderValue::as_bytes))
                .map_err(|refusal| warp::reject::custom(Unauthorized(refusal)));
            std::future::ready(checked)
        })
        .untuple_one()
}
