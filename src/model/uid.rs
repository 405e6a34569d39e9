//! The order id.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::{Problem, MAX_UID_LEN};

/// An order id that is non-empty, at most [`MAX_UID_LEN`] bytes, and made of
/// `A-Z a-z 0-9 _ -` only, so it can stand in a URL path as it is.
///
/// # Examples
///
/// ```
/// use order_cache::OrderUid;
///
/// assert!(OrderUid::parse("b563feb7b2b84b6test").is_ok());
/// assert!(OrderUid::parse("../etc/passwd").is_err());
/// assert!(OrderUid::parse("").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct OrderUid(String);

impl OrderUid {
    /// Checks `s` against the id rules.
    ///
    /// # Errors
    ///
    /// The [`Problem`] with the id.
    pub fn parse(s: &str) -> Result<OrderUid, Problem> {
        if s.is_empty() {
            return Err(Problem::Empty);
        }
        if s.len() > MAX_UID_LEN {
            return Err(Problem::TooLong {
                len: s.len(),
                max: MAX_UID_LEN,
            });
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(Problem::BadCharacter);
        }
        Ok(OrderUid(s.to_owned()))
    }

    /// An id this crate made from the id alphabet itself (the demo orders'),
    /// so it cannot fail the rules [`OrderUid::parse`] checks.
    #[cfg(feature = "demo")]
    pub(crate) fn generated(s: String) -> OrderUid {
        debug_assert!(OrderUid::parse(&s).is_ok(), "{s:?} is not an id");
        OrderUid(s)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OrderUid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        OrderUid::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_uid_must_be_url_safe_and_bounded() {
        for bad in [
            "",
            "a/b",
            "a?b",
            "a%20",
            "..",
            "a b",
            "абв",
            "ａ",
            "a.b",
            &"x".repeat(65),
        ] {
            assert!(OrderUid::parse(bad).is_err(), "{bad:?}");
        }
        for good in ["x".repeat(64).as_str(), "A-z_09"] {
            assert_eq!(
                OrderUid::parse(good).map(|u| u.to_string()),
                Ok(good.to_owned())
            );
        }
    }
}
