//! Why a payload is not an order: the rejection, and what is wrong with one
//! field.

/// Why a payload is not an [`Order`](super::Order).
///
/// [`Rejection::reason`] gives a short stable label for metrics and headers;
/// `Display` gives the full explanation for people.
///
/// # Examples
///
/// ```
/// use order_cache::{Order, Rejection};
///
/// let err = Order::decode(b"{\"order_uid\": 42}").unwrap_err();
/// assert_eq!(err.reason(), "shape");
///
/// let mut order: serde_json::Value =
///     serde_json::from_slice(include_bytes!("../../examples/example.json")).unwrap();
/// order["items"][0]["sale"] = 150.into();
/// let err = Order::decode(order.to_string().as_bytes()).unwrap_err();
/// assert!(matches!(err, Rejection::Invalid { .. }));
/// assert_eq!(err.to_string(), "items[0].sale: 150 is outside 0..=100");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// The payload is empty or white space only.
    #[error("payload is empty")]
    Empty,
    /// The payload exceeds [`MAX_PAYLOAD_BYTES`](super::MAX_PAYLOAD_BYTES).
    #[error("payload is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// Size of the payload.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not valid UTF-8.
    #[error("payload is not UTF-8")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// The payload is not JSON.
    #[error("payload is not JSON")]
    Syntax(#[source] serde_json::Error),
    /// The payload is JSON, but not shaped like an order.
    #[error("payload is not an order")]
    Shape(#[source] serde_json::Error),
    /// A field breaks one of the rules.
    #[error("{field}: {problem}")]
    Invalid {
        /// Path of the field, e.g. `items[2].price`.
        field: String,
        /// What is wrong with it.
        problem: Problem,
    },
}

impl Rejection {
    /// A short, stable label: `empty`, `too_large`, `not_utf8`, `syntax`,
    /// `shape` or `invalid`.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Empty => "empty",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::NotUtf8(_) => "not_utf8",
            Rejection::Syntax(_) => "syntax",
            Rejection::Shape(_) => "shape",
            Rejection::Invalid { .. } => "invalid",
        }
    }

    pub(super) fn invalid(field: impl Into<String>, problem: Problem) -> Self {
        Rejection::Invalid {
            field: field.into(),
            problem,
        }
    }
}

/// What is wrong with one field.
///
/// # Examples
///
/// ```
/// use order_cache::model::Problem;
/// use order_cache::OrderUid;
///
/// assert_eq!(OrderUid::parse("a b"), Err(Problem::BadCharacter));
/// assert_eq!(
///     OrderUid::parse(&"x".repeat(65)),
///     Err(Problem::TooLong { len: 65, max: 64 })
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The value must not be empty.
    #[error("must not be empty")]
    Empty,
    /// The text is longer than allowed.
    #[error("is {len} bytes long, more than {max}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The text holds a NUL character.
    #[error("must not contain NUL characters")]
    Nul,
    /// The id has a character that cannot appear in a URL path unescaped.
    #[error("may only contain A-Z, a-z, 0-9, '_' and '-'")]
    BadCharacter,
    /// A number is outside its allowed range.
    #[error("{value} is outside {min}..={max}")]
    OutOfRange {
        /// The value given.
        value: i64,
        /// Lowest allowed.
        min: i64,
        /// Highest allowed.
        max: i64,
    },
    /// A list has too few or too many entries.
    #[error("has {len} entries, allowed {min}..={max}")]
    Count {
        /// Entries given.
        len: usize,
        /// Fewest allowed.
        min: usize,
        /// Most allowed.
        max: usize,
    },
    /// A timestamp is not an RFC 3339 date-time.
    #[error("{0}")]
    Date(DateProblem),
}

/// How a timestamp's text fails to be an RFC 3339 `date-time`; each names
/// the text it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateProblem {
    /// Not shaped like an RFC 3339 date-time.
    #[error(
        "{0:?} is not an RFC 3339 date-time such as \"2021-11-26T06:22:19Z\" or \"2021-11-26T09:22:19.5+03:00\""
    )]
    NotRfc3339(String),
    /// A date and time with nothing to say which zone they are in.
    #[error("{0:?} has no UTC offset: end it with \"Z\" or an offset such as \"+03:00\"")]
    NoOffset(String),
    /// Shaped right, but naming no such date or time: a day the month does
    /// not have, an hour, minute, second or offset out of range.
    #[error(
        "{0:?} names no such date or time (a day, hour, minute, second or offset out of range)"
    )]
    OutOfRange(String),
}
