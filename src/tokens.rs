//! The access tokens that open the routes holding orders: parsed once at
//! the edge, compared in constant time, never shown.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use subtle::{Choice, ConstantTimeEq};

/// Fewest characters a token may have: a token is a password no person
/// types, so a short one is a mistake (`openssl rand -hex 32` gives 64).
pub const MIN_TOKEN_LEN: usize = 16;

/// The bearer tokens a request may carry (`Authorization: Bearer <token>`)
/// to be served. Several may be valid at once, so that a token can be
/// rotated without downtime: add the new one, move the clients over, then
/// remove the old one. None (the default) means the routes are open.
///
/// Compared in constant time ([`subtle`]), against every token each time,
/// so an answer's timing says neither how much of a token was right nor
/// which one matched (only, as any comparison of unequal lengths, whether
/// the lengths differ). `Debug` shows how many there are, never one.
///
/// # Examples
///
/// ```
/// use order_cache::BearerTokens;
///
/// // As API_TOKEN gives them: comma separated (newlines too, as in a file).
/// let tokens = BearerTokens::parse("old-token-0123456789, new-token-9876543210").unwrap();
/// assert_eq!(tokens.len(), 2);
/// assert!(tokens.admits("Bearer new-token-9876543210"));
/// assert!(!tokens.admits("Bearer some-other-token-0000"));
/// assert_eq!(format!("{tokens:?}"), "BearerTokens(2 tokens, hidden)");
///
/// assert!(BearerTokens::parse("short").is_err());
/// assert!(BearerTokens::none().admits("anything: no tokens, no check"));
/// ```
#[derive(Clone, Default)]
pub struct BearerTokens(Option<Arc<[Box<[u8]>]>>);

/// Why a list of tokens was refused. The messages say which token (by its
/// place in the list) and why, never the token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The list holds no token at all (empty, or only separators): given
    /// on purpose, it must not leave the routes open.
    #[error("holds no token")]
    Empty,
    /// A token shorter than [`MIN_TOKEN_LEN`].
    #[error("token {position} is shorter than {MIN_TOKEN_LEN} characters")]
    TooShort {
        /// Its place in the list, from 1.
        position: usize,
    },
    /// A token with a character an HTTP header cannot carry in a bearer
    /// credential (only visible ASCII is allowed).
    #[error("token {position} holds a character other than visible ASCII")]
    BadCharacter {
        /// Its place in the list, from 1.
        position: usize,
    },
    /// The token file could not be read. Its path is not told: given the
    /// token by mistake (`API_TOKEN_FILE=<the token>`), it would be printed.
    #[error("cannot read the token file")]
    Read(#[source] std::io::Error),
}

impl BearerTokens {
    /// No tokens: every request is served.
    pub fn none() -> BearerTokens {
        BearerTokens(None)
    }

    /// The tokens in `list`, separated by commas, whitespace or newlines.
    ///
    /// # Errors
    ///
    /// [`TokenError`] when the list holds no token, or a token is shorter
    /// than [`MIN_TOKEN_LEN`] or holds a character other than visible ASCII.
    pub fn parse(list: &str) -> Result<BearerTokens, TokenError> {
        let mut tokens = Vec::new();
        let parts = list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty());
        for (i, token) in parts.enumerate() {
            let position = i + 1;
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(TokenError::BadCharacter { position });
            }
            if token.len() < MIN_TOKEN_LEN {
                return Err(TokenError::TooShort { position });
            }
            tokens.push(Box::from(token.as_bytes()));
        }
        if tokens.is_empty() {
            return Err(TokenError::Empty);
        }
        Ok(BearerTokens(Some(tokens.into())))
    }

    /// The tokens in the file at `path` (a secret an orchestrator mounts),
    /// read once, now: one a line, or as [`BearerTokens::parse`] reads them.
    ///
    /// # Errors
    ///
    /// [`TokenError::Read`] when the file cannot be read, else as
    /// [`BearerTokens::parse`].
    pub fn read_file(path: &Path) -> Result<BearerTokens, TokenError> {
        let text = std::fs::read_to_string(path).map_err(TokenError::Read)?;
        BearerTokens::parse(&text)
    }

    /// Whether there are none, so every request is served.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.0.as_deref().map_or(0, <[_]>::len)
    }

    /// Whether a request whose `Authorization` header is `authorization`
    /// may be served: always when there are no tokens, else when it is
    /// `Bearer <one of the tokens>` (the scheme's name in any case).
    pub fn admits(&self, authorization: &str) -> bool {
        self.check(Some(authorization.as_bytes())).is_ok()
    }

    /// [`BearerTokens::admits`] for a request that may have no header, and
    /// why not.
    pub(crate) fn check(&self, authorization: Option<&[u8]>) -> Result<(), Refusal> {
        let Some(tokens) = self.0.as_deref() else {
            return Ok(());
        };
        let Some(authorization) = authorization else {
            return Err(Refusal::Missing);
        };
        let Some(credential) = bearer_credential(authorization) else {
            // Another scheme (Basic) sent no token to refuse: RFC 6750
            // §3.1 answers it with the plain challenge.
            return Err(if is_bearer(authorization) {
                Refusal::Invalid
            } else {
                Refusal::Missing
            });
        };
        let matched = tokens
            .iter()
            .fold(Choice::from(0), |any, token| any | token.ct_eq(credential));
        if bool::from(matched) {
            Ok(())
        } else {
            Err(Refusal::Invalid)
        }
    }
}

/// Why a request was not admitted, as RFC 6750 tells a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No `Authorization` header: the client did not know a token is needed.
    Missing,
    /// A header that is not `Bearer` and one of the tokens.
    Invalid,
}

/// The credential of `Bearer <credential>`, the scheme's name in any case
/// (RFC 9110 §11.1), after one or more spaces (`"Bearer" 1*SP b64token`,
/// RFC 6750 §2.1). Bytes, not text: a header need not be UTF-8, and such a
/// one is refused like any other.
fn bearer_credential(authorization: &[u8]) -> Option<&[u8]> {
    let space = authorization.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = (&authorization[..space], &authorization[space..]);
    let start = rest.iter().position(|&b| b != b' ')?;
    let credential = &rest[start..];
    scheme.eq_ignore_ascii_case(b"bearer").then_some(credential)
}

/// Whether the header names the `Bearer` scheme, with or without a
/// credential.
fn is_bearer(authorization: &[u8]) -> bool {
    let scheme = authorization
        .split(|&b| b == b' ')
        .next()
        .unwrap_or_default();
    scheme.eq_ignore_ascii_case(b"bearer")
}

impl fmt::Debug for BearerTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.len() {
            0 => f.write_str("BearerTokens(none)"),
            1 => f.write_str("BearerTokens(1 token, hidden)"),
            n => write!(f, "BearerTokens({n} tokens, hidden)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BearerTokens, Refusal, TokenError};

    const A: &str = "token-a-0123456789abcdef";
    const B: &str = "token-b-fedcba9876543210";

    #[test]
    fn a_list_is_split_on_commas_whitespace_and_newlines() {
        let tokens = BearerTokens::parse(&format!(" {A} ,{B}\n")).unwrap();
        assert_eq!(tokens.len(), 2);
        let tokens = BearerTokens::parse(&format!("{A}\r\n{B}\r\n")).unwrap();
        assert_eq!(tokens.len(), 2);
        for token in [A, B] {
            assert!(tokens.admits(&format!("Bearer {token}")));
            assert!(tokens.admits(&format!("bEaReR {token}")));
        }
    }

    #[test]
    fn only_the_exact_token_after_bearer_is_admitted() {
        let tokens = BearerTokens::parse(A).unwrap();
        for refused in [
            format!("Bearer {A}x"),
            format!("Bearer {}", &A[..A.len() - 1]),
            format!("Bearer {A} "),
            "Bearer ".to_owned(),
            "Bearer  ".to_owned(),
            "Bearer".to_owned(),
        ] {
            assert_eq!(
                tokens.check(Some(refused.as_bytes())),
                Err(Refusal::Invalid),
                "{refused:?}"
            );
        }
        // Another scheme, or none: no bearer token was sent to refuse.
        for other in [
            A.to_owned(),
            format!("Basic {A}"),
            format!("Bearer\t{A}"),
            String::new(),
        ] {
            assert_eq!(
                tokens.check(Some(other.as_bytes())),
                Err(Refusal::Missing),
                "{other:?}"
            );
        }
        // RFC 6750: one or more spaces after the scheme.
        assert!(tokens.admits(&format!("Bearer  {A}")));
        assert_eq!(
            tokens.check(Some(b"Bearer \xff\xfe")),
            Err(Refusal::Invalid)
        );
        assert_eq!(tokens.check(None), Err(Refusal::Missing));
        assert!(tokens.admits(&format!("Bearer {A}")));
    }

    #[test]
    fn no_tokens_admit_everyone() {
        assert!(BearerTokens::none().is_empty());
        assert_eq!(BearerTokens::none().check(None), Ok(()));
        assert_eq!(BearerTokens::default().len(), 0);
    }

    #[test]
    fn lists_that_cannot_work_are_refused_without_showing_a_token() {
        for (list, want) in [
            ("", "holds no token"),
            (" ,\n, ", "holds no token"),
            ("Zq9Leak", "token 1 is shorter than 16 characters"),
            (
                &format!("{A},Zq9Leak"),
                "token 2 is shorter than 16 characters",
            ),
            (
                &format!("{A},Zq9Leak-é-0123456789"),
                "token 2 holds a character other than visible ASCII",
            ),
            (
                "Zq9Leak-\u{7f}-0123456789",
                "token 1 holds a character other than visible ASCII",
            ),
        ] {
            let e = BearerTokens::parse(list).unwrap_err();
            assert_eq!(e.to_string(), want);
            assert!(!format!("{e:?}").contains("Zq9Leak"), "{e:?}");
        }
    }

    #[test]
    fn debug_shows_how_many_never_which() {
        let tokens = BearerTokens::parse(&format!("{A},{B}")).unwrap();
        let debug = format!("{tokens:?}");
        assert_eq!(debug, "BearerTokens(2 tokens, hidden)");
        assert_eq!(
            format!("{:?}", BearerTokens::parse(A).unwrap()),
            "BearerTokens(1 token, hidden)"
        );
        assert_eq!(format!("{:?}", BearerTokens::none()), "BearerTokens(none)");
    }

    #[test]
    fn an_unreadable_file_is_refused_without_printing_its_path() {
        // The path may be the token itself, given in the wrong setting.
        let e = BearerTokens::read_file("no-such-token-0123456789".as_ref()).unwrap_err();
        assert!(matches!(e, TokenError::Read(_)));
        assert_eq!(e.to_string(), "cannot read the token file");
        assert!(!format!("{e:?}").contains("no-such-token"), "{e:?}");
    }
}
