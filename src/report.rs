//! Printing an error with its causes.
//!
//! This crate's errors follow the convention thiserror documents: an
//! error's message is its own layer's, and its cause is reached through
//! [`source`](std::error::Error::source), never repeated in the message.
//! [`Report`] prints the whole chain, once, for logs and for people.

use std::error::Error;
use std::fmt;

/// An error and its chain of causes, printed `outer: cause: root cause`.
///
/// # Examples
///
/// ```
/// use order_cache::{Order, Report};
///
/// let err = Order::decode(b"{ nope").unwrap_err();
/// assert_eq!(err.to_string(), "payload is not JSON");
/// assert_eq!(
///     Report(&err).to_string(),
///     "payload is not JSON: key must be a string at line 1 column 3"
/// );
/// ```
pub struct Report<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut printed = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(e) = cause {
            let text = e.to_string();
            // Some libraries (async-nats among them) put their cause in
            // their own message too: print each text once.
            if !printed.ends_with(&text) {
                write!(f, ": {text}")?;
                printed = text;
            }
            cause = e.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
