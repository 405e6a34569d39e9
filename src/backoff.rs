//! Waiting between retries: a delay that doubles after each failure, up to
//! a limit, and starts over after a success.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use crate::report::Report;

/// A doubling delay, from `first` up to `max`.
///
/// Each [`Backoff::next`] hands out the current delay and doubles the one
/// after it; [`Backoff::reset`] goes back to `first`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The delay to wait now; the one after it is twice as long.
    pub(crate) fn next(&mut self) -> Duration {
        let now = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        now
    }

    /// Back to the first delay, after a success.
    pub(crate) fn reset(&mut self) {
        self.next = self.first;
    }

    /// The delay before the `attempt`th try (1 for the first retry), for
    /// retries that carry their own count, such as a message's deliveries.
    pub(crate) fn nth(&self, attempt: u64) -> Duration {
        let doublings = u32::try_from(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(20);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

/// Calls `attempt` until it succeeds or `deadline` has passed, waiting
/// `pause` between tries and logging each failure as `waiting for {what}`.
/// Returns the last error once the deadline has passed.
pub(crate) async fn retry_until<T, E, F>(
    deadline: Instant,
    pause: Duration,
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    E: std::error::Error,
{
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(e) => {
                warn!(error = %Report(&e), "waiting for {what}");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_limit_and_starts_over() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(1));
        let delays: Vec<_> = (0..4).map(|_| b.next().as_millis()).collect();
        assert_eq!(delays, [250, 500, 1000, 1000]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(250));
    }

    #[test]
    fn the_nth_delay_matches_as_many_doublings() {
        let b = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
        assert_eq!(b.nth(0), Duration::from_millis(250));
        assert_eq!(b.nth(1), Duration::from_millis(250));
        assert_eq!(b.nth(3), Duration::from_millis(1000));
        assert_eq!(b.nth(u64::MAX), Duration::from_secs(5));
    }
}
