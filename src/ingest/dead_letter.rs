//! Dead letters: what cannot be an order (or what PostgreSQL refuses) is
//! published to the dead-letter stream with its reason, then terminated.
//!
//! [`DeadLetter`] is the letter's headers, written here and read by the
//! `order-cache-dlq` tool.

use async_nats::jetstream;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::{AckKind, Message};
use async_nats::HeaderMap;
use bytes::Bytes;
use tracing::warn;

use super::{ack, ensure_topology, Ingestor};
use crate::report::Report;

/// Header of a dead letter that gives the short reason (`syntax`, `shape`,
/// `invalid`, `database`, ...).
pub const REASON_HEADER: &str = "Order-Cache-Reason";
/// Header of a dead letter that explains the reason in full.
pub const ERROR_HEADER: &str = "Order-Cache-Error";
/// Header of a dead letter that gives the message's sequence in the source
/// stream.
pub const SEQUENCE_HEADER: &str = "Order-Cache-Stream-Sequence";
/// Header of a dead letter that names the stream the message came from; with
/// [`SEQUENCE_HEADER`] it locates the original message there.
pub const SOURCE_STREAM_HEADER: &str = "Order-Cache-Source-Stream";
/// Header of a dead letter whose payload was too large to carry with the
/// letter's headers within the broker's `max_payload`: the letter's body is
/// empty, this header gives the original size in bytes, and the original
/// bytes stay readable at [`SEQUENCE_HEADER`] in [`SOURCE_STREAM_HEADER`]
/// while that stream retains them.
pub const PAYLOAD_OMITTED_HEADER: &str = "Order-Cache-Payload-Omitted";

/// Every reason a dead letter gives in [`REASON_HEADER`]: each
/// [`Rejection::reason`](crate::Rejection::reason), and `database` for an
/// order PostgreSQL refused.
pub const REASONS: [&str; 7] = [
    "empty",
    "too_large",
    "not_utf8",
    "syntax",
    "shape",
    "invalid",
    "database",
];

/// What a dead letter says about the message it stands for, in its
/// headers: the service writes them, the dead-letter tool reads them.
/// Header values are one line of at most 512 visible characters: control
/// characters become spaces, longer texts are cut, and an empty one is
/// written `-`, so only such a letter reads back different.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Why, in short: one of [`REASONS`].
    pub reason: String,
    /// Why, in full.
    pub error: String,
    /// The stream the original message is in.
    pub source_stream: String,
    /// The original message's sequence there, if the letter says.
    pub source_sequence: Option<u64>,
    /// `Some(size)` when the payload was too large to travel with the
    /// letter, which then carries none (`size` is `None` if unreadable);
    /// `None` when the letter carries the original payload.
    pub payload_omitted: Option<Option<u64>>,
}

impl DeadLetter {
    /// The letter's headers.
    pub fn to_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(REASON_HEADER, header_text(&self.reason).as_str());
        headers.insert(ERROR_HEADER, header_text(&self.error).as_str());
        if let Some(seq) = self.source_sequence {
            headers.insert(SEQUENCE_HEADER, seq.to_string().as_str());
        }
        headers.insert(SOURCE_STREAM_HEADER, self.source_stream.as_str());
        if let Some(size) = self.payload_omitted {
            let size = size.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
            headers.insert(PAYLOAD_OMITTED_HEADER, size.as_str());
        }
        headers
    }

    /// A letter read from its headers; `orders_stream` is the source for
    /// letters that do not name one (written before they did).
    ///
    /// # Examples
    ///
    /// ```
    /// use order_cache::ingest::DeadLetter;
    ///
    /// let letter = DeadLetter {
    ///     reason: "syntax".into(),
    ///     error: "payload is not JSON: expected value at line 1 column 1".into(),
    ///     source_stream: "ORDERS".into(),
    ///     source_sequence: Some(42),
    ///     payload_omitted: None,
    /// };
    /// let headers = letter.to_headers();
    /// assert_eq!(DeadLetter::from_headers(Some(&headers), "OTHER"), letter);
    /// ```
    pub fn from_headers(headers: Option<&HeaderMap>, orders_stream: &str) -> DeadLetter {
        let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
        DeadLetter {
            reason: header(REASON_HEADER).unwrap_or_default().to_owned(),
            error: header(ERROR_HEADER).unwrap_or_default().to_owned(),
            source_stream: header(SOURCE_STREAM_HEADER)
                .unwrap_or(orders_stream)
                .to_owned(),
            source_sequence: header(SEQUENCE_HEADER).and_then(|s| s.trim().parse().ok()),
            payload_omitted: header(PAYLOAD_OMITTED_HEADER).map(|s| s.trim().parse().ok()),
        }
    }
}

/// A message of a batch to dead-letter: where it is in its batch, and why.
pub(super) struct Rejected {
    pub(super) index: usize,
    pub(super) reason: &'static str,
    pub(super) error: String,
}

impl Ingestor {
    /// Publishes each rejected message, with its reason, to the dead-letter
    /// subject, then terminates it. A payload too large to travel with the
    /// letter's headers is left out of the letter, which then points at the
    /// original in the source stream. A message that cannot be dead-lettered
    /// at all is nak'ed with a growing delay; the messages behind it go on.
    pub(super) async fn dead_letter(&self, messages: &[Message], letters: Vec<Rejected>) {
        let mut acks = Vec::with_capacity(letters.len());
        for letter in letters {
            let message = &messages[letter.index];
            let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
            warn!(
                reason = letter.reason,
                error = %letter.error,
                stream_sequence = seq,
                "order rejected; dead-lettered"
            );
            let size = message.payload.len();
            let mut publish = self
                .publish_letter(&letter, message, seq, size, message.payload.clone())
                .await;
            if let Err(e) = &publish {
                if e.kind() == PublishErrorKind::MaxPayloadExceeded {
                    publish = self
                        .publish_letter(&letter, message, seq, size, Bytes::new())
                        .await;
                }
            }
            acks.push((message, letter.reason, publish));
        }
        let mut failed = false;
        for (message, reason, publish) in acks {
            let stored = match publish {
                Ok(ack) => ack.await.map(|_| ()).map_err(async_nats::Error::from),
                Err(e) => Err(e.into()),
            };
            match stored {
                Ok(()) => {
                    self.metrics.rejected(reason);
                    ack(message, AckKind::Term).await;
                }
                Err(e) => {
                    warn!(error = %Report(&*e), "cannot dead-letter; will retry");
                    ack(message, AckKind::Nak(Some(self.backoff(message)))).await;
                    failed = true;
                }
            }
        }
        if failed {
            // The dead-letter stream may have been deleted (a natural way
            // to empty it): make it again, or every rejected message would
            // be nak'ed forever and, at max_ack_pending, stop ingestion.
            if let Err(e) = ensure_topology(&self.js, &self.config).await {
                warn!(error = %Report(&e), "cannot set up the streams again");
            }
        }
    }

    /// Publishes one letter carrying `payload`; when that is not the whole
    /// original (`size` bytes), the letter says so and points at it. The
    /// letter keeps the original's trace context.
    async fn publish_letter(
        &self,
        letter: &Rejected,
        original: &Message,
        seq: u64,
        size: usize,
        payload: Bytes,
    ) -> Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError> {
        let mut headers = DeadLetter {
            reason: letter.reason.to_owned(),
            error: letter.error.clone(),
            source_stream: self.config.stream.clone(),
            source_sequence: Some(seq),
            payload_omitted: (payload.len() != size).then(|| u64::try_from(size).ok()),
        }
        .to_headers();
        crate::trace::keep_context(original.headers.as_ref(), &mut headers);
        // Redelivery of the same bad message must not be dead-lettered
        // twice.
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("{}-{}", self.config.stream, seq).as_str(),
        );
        self.js
            .publish_with_headers(self.config.dlq_subject.clone(), headers, payload)
            .await
    }
}

/// Header values are one line of visible text.
fn header_text(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(512)
        .collect();
    if out.is_empty() {
        out.push('-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Order;

    #[test]
    fn every_rejection_gives_a_listed_reason() {
        let too_large = vec![b' '; crate::model::MAX_PAYLOAD_BYTES + 1];
        let payloads: [&[u8]; 6] = [
            b"",
            &too_large,
            b"\xff",
            b"{",
            b"[]",
            br#"{"order_uid":""}"#,
        ];
        for payload in payloads {
            let reason = Order::decode(payload).map(|_| ()).unwrap_err().reason();
            assert!(REASONS.contains(&reason), "{reason}");
        }
    }
}
