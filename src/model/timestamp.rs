//! The order's timestamp: RFC 3339 UTC, in one canonical spelling.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{DateProblem, Problem};

/// A point in time that travels as canonical RFC 3339 UTC text, e.g.
/// `2021-11-26T06:22:19Z`, with microsecond precision at most (PostgreSQL's).
///
/// # Examples
///
/// ```
/// use order_cache::model::Timestamp;
///
/// let t = Timestamp::parse("2021-11-26T06:22:19Z").unwrap();
/// assert_eq!(t.to_string(), "2021-11-26T06:22:19Z");
/// assert_eq!(t.as_datetime().timestamp(), 1637907739);
///
/// // Another spelling of the same time is refused, naming the canonical one.
/// let err = Timestamp::parse("2021-11-26T06:22:19.000Z").unwrap_err();
/// assert!(err.to_string().contains("\"2021-11-26T06:22:19Z\""));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// Parses canonical RFC 3339 UTC text.
    ///
    /// # Errors
    ///
    /// [`Problem::Date`] saying what the canonical spelling would be, when it
    /// can tell.
    pub fn parse(s: &str) -> Result<Timestamp, Problem> {
        let parsed = DateTime::parse_from_rfc3339(s)
            .map_err(|e| Problem::Date(DateProblem::NotRfc3339(s.into(), e)))?;
        if parsed.offset().local_minus_utc() != 0 || !s.ends_with('Z') {
            return Err(Problem::Date(DateProblem::NotUtc(s.into())));
        }
        let utc = parsed.with_timezone(&Utc);
        // chrono keeps a leap second (`…:59:60Z`) as a second that lasts
        // two; PostgreSQL has none and would store the next minute, so the
        // same order would read back differently after a restart.
        if utc.timestamp_subsec_nanos() >= 1_000_000_000 {
            return Err(Problem::Date(DateProblem::LeapSecond(s.into())));
        }
        if utc.timestamp_subsec_nanos() % 1000 != 0 {
            return Err(Problem::Date(DateProblem::TooPrecise(s.into())));
        }
        let ts = Timestamp(utc);
        let canonical = ts.to_string();
        if canonical != s {
            return Err(Problem::Date(DateProblem::NotCanonical(
                s.into(),
                canonical,
            )));
        }
        Ok(ts)
    }

    /// The time as a `chrono` value.
    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Timestamp(t)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_must_be_canonical_utc() {
        for bad in [
            "yesterday",
            "2021-11-26",
            "2021-11-26 06:22:19Z",
            "2021-11-26T06:22:19+00:00",
            "2021-11-26T09:22:19+03:00",
            "2021-11-26T06:22:19.000Z",
            "2021-11-26T06:22:19.5Z",
            "2021-11-26T06:22:19.123456789Z",
            "2021-11-26t06:22:19z",
            "2021-02-30T06:22:19Z",
            // Leap seconds: PostgreSQL would store the next minute.
            "2016-12-31T23:59:60Z",
            "2016-12-31T23:59:60.500Z",
            "2015-06-30T23:59:60.000001Z",
        ] {
            assert!(
                matches!(Timestamp::parse(bad), Err(Problem::Date(_))),
                "{bad}"
            );
        }
        for good in [
            "2021-11-26T06:22:19Z",
            "2021-11-26T06:22:19.500Z",
            "2021-11-26T06:22:19.500001Z",
        ] {
            let t = Timestamp::parse(good).expect(good);
            assert_eq!(t.to_string(), good);
        }
    }
}
