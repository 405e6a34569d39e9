//! The order's timestamp: any RFC 3339 `date-time`, kept as the text that
//! was sent, with the instant it names.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{DateProblem, Problem};

/// Longest date text accepted, in bytes. RFC 3339 allows any number of
/// fractional digits; 64 bytes leaves room for 35 of them with an offset.
pub const MAX_DATE_LEN: usize = 64;

/// A point in time as an RFC 3339 `date-time`, kept as the text it was
/// given in, with the instant that text names (to the microsecond,
/// PostgreSQL's precision).
///
/// Any spelling RFC 3339 §5.6 allows is accepted, up to [`MAX_DATE_LEN`]
/// bytes (RFC 3339 sets no bound on the fraction; a stored text needs one):
/// fractional seconds of any length within it, `Z`, `z` or any `±hh:mm`
/// offset (`-00:00` too), `T`, `t` or a space between date and time (the
/// readability exception of §5.6), and a leap second (`…:60`). The text is
/// what is served back; the instant is what is stored in the `timestamptz`
/// column beside it:
///
/// - digits past the sixth are cut, not rounded (the instant is the
///   microsecond the time falls in);
/// - a leap second is the last microsecond of its minute (`23:59:60.5Z` is
///   `23:59:59.999999Z`), as PostgreSQL has no leap seconds.
///
/// # Examples
///
/// ```
/// use order_cache::model::Timestamp;
///
/// // Go's time.Time, in a +03:00 zone: kept as sent.
/// let t = Timestamp::parse("2026-12-01T23:39:28.708645252+03:00").unwrap();
/// assert_eq!(t.as_str(), "2026-12-01T23:39:28.708645252+03:00");
/// assert_eq!(t.to_string(), "2026-12-01T23:39:28.708645252+03:00");
/// assert_eq!(t.canonical(), "2026-12-01T20:39:28.708645Z");
///
/// // Not a date-time: refused, saying what was expected.
/// let err = Timestamp::parse("2026-12-01T23:39:28").unwrap_err();
/// assert!(err.to_string().contains("no UTC offset"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    instant: DateTime<Utc>,
    text: Box<str>,
}

impl Timestamp {
    /// Parses an RFC 3339 `date-time`.
    ///
    /// # Errors
    ///
    /// [`Problem::Date`] naming the text and what is wrong with it.
    pub fn parse(s: &str) -> Result<Timestamp, Problem> {
        let date = |p: fn(String) -> DateProblem| Problem::Date(p(s.into()));
        if s.len() > MAX_DATE_LEN {
            return Err(Problem::TooLong {
                len: s.len(),
                max: MAX_DATE_LEN,
            });
        }
        grammar(s.as_bytes()).map_err(|e| match e {
            Grammar::NoOffset => date(DateProblem::NoOffset),
            Grammar::Syntax => date(DateProblem::NotRfc3339),
        })?;
        // The grammar is RFC 3339's; chrono checks the calendar (days in
        // the month, leap years) and the ranges of each part.
        let parsed = DateTime::parse_from_rfc3339(s).map_err(|_| date(DateProblem::OutOfRange))?;
        let utc = parsed.with_timezone(&Utc);
        let nanos = utc.nanosecond();
        // chrono keeps a leap second as a second that lasts two; the
        // instant is the last microsecond of the minute instead.
        let micros = if nanos >= 1_000_000_000 {
            999_999
        } else {
            nanos / 1000
        };
        let instant = utc
            .with_nanosecond(micros * 1000)
            .ok_or_else(|| date(DateProblem::OutOfRange))?;
        Ok(Timestamp {
            instant,
            text: s.into(),
        })
    }

    /// The instant, to the microsecond.
    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.instant
    }

    /// The text as it was given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text as sent, unless it is [`Timestamp::canonical`]: what the
    /// store keeps beside the instant, from which the canonical spelling
    /// is made again.
    pub fn as_sent_if_not_canonical(&self) -> Option<&str> {
        (*self.text != self.canonical()).then_some(&*self.text)
    }

    /// The instant as RFC 3339 UTC with 0, 3 or 6 fractional digits: what
    /// [`Timestamp::from`] a `DateTime` spells, and what every date was
    /// required to be before any RFC 3339 text was accepted.
    pub fn canonical(&self) -> String {
        canonical(self.instant)
    }
}

fn canonical(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// How a text fails RFC 3339's `date-time` grammar.
enum Grammar {
    /// A date and time, but no offset after them.
    NoOffset,
    Syntax,
}

/// RFC 3339 §5.6 `date-time`, with the space separator of its note:
/// `dddd-dd-ddTdd:dd:dd[.d+](Z|±dd:dd)`, letters in either case. Only the
/// shape: the values' ranges are chrono's to check. Stricter than chrono's
/// own parser, which also takes a Unicode minus sign in the offset.
fn grammar(s: &[u8]) -> Result<(), Grammar> {
    const SHAPE: &[u8; 19] = b"0000-00-00T00:00:00";
    if s.len() < SHAPE.len() {
        return Err(Grammar::Syntax);
    }
    for (&c, &want) in s.iter().zip(SHAPE) {
        let ok = match want {
            b'0' => c.is_ascii_digit(),
            b'T' => matches!(c, b'T' | b't' | b' '),
            _ => c == want,
        };
        if !ok {
            return Err(Grammar::Syntax);
        }
    }
    let mut rest = &s[SHAPE.len()..];
    if let [b'.', tail @ ..] = rest {
        let digits = tail.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(Grammar::Syntax);
        }
        rest = &tail[digits..];
    }
    match rest {
        [] => Err(Grammar::NoOffset),
        [b'Z' | b'z'] => Ok(()),
        [b'+' | b'-', h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()) =>
        {
            Ok(())
        }
        _ => Err(Grammar::Syntax),
    }
}

/// The instant in its canonical spelling, as a `timestamptz` column gives
/// it back for a row stored without its text.
impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Timestamp {
            instant: t,
            text: canonical(t).into(),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
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

    fn instant(s: &str) -> String {
        Timestamp::parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .canonical()
    }

    #[test]
    fn every_rfc_3339_spelling_is_kept_as_sent() {
        for good in [
            "2021-11-26T06:22:19Z",
            "2021-11-26T06:22:19.5Z",
            "2021-11-26T06:22:19.000Z",
            "2021-11-26T06:22:19.123456789Z",
            "2021-11-26T06:22:19.1234567891234Z",
            "2021-11-26T06:22:19+00:00",
            "2021-11-26T06:22:19-00:00",
            "2021-11-26T09:22:19+03:00",
            "2021-11-26T06:22:19+23:59",
            "2021-11-26T06:22:19-23:59",
            "2021-11-26t06:22:19z",
            "2021-11-26 06:22:19Z",
            "2016-12-31T23:59:60Z",
            "2016-12-31T23:59:60.5Z",
            "2024-02-29T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "0000-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59.999999999-23:59",
        ] {
            let t = Timestamp::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(t.as_str(), good);
            assert_eq!(t.to_string(), good);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{good}\""));
        }
    }

    #[test]
    fn the_instant_is_cut_to_microseconds_and_a_leap_second_ends_its_minute() {
        assert_eq!(instant("2021-11-26T09:22:19+03:00"), "2021-11-26T06:22:19Z");
        assert_eq!(
            instant("2021-11-26T06:22:19.123456789Z"),
            "2021-11-26T06:22:19.123456Z"
        );
        assert_eq!(
            instant("2021-11-26T06:22:19.9999999Z"),
            "2021-11-26T06:22:19.999999Z"
        );
        assert_eq!(
            instant("2016-12-31T23:59:60Z"),
            "2016-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            instant("2017-01-01T02:59:60.5+03:00"),
            "2016-12-31T23:59:59.999999Z"
        );
        assert_eq!(instant("2021-11-26T06:22:19-00:00"), "2021-11-26T06:22:19Z");
        assert_eq!(
            instant("0000-01-01T00:00:00+23:59"),
            "-0001-12-31T00:01:00Z"
        );
        assert_eq!(
            instant("9999-12-31T23:59:59-23:59"),
            "+10000-01-01T23:58:59Z"
        );
        assert_eq!(
            instant("2021-11-26 06:22:19.5z"),
            "2021-11-26T06:22:19.500Z"
        );
    }

    #[test]
    fn what_is_not_a_date_time_is_refused_naming_the_text() {
        for bad in [
            "",
            "yesterday",
            "2021-11-26",
            "2021-11-26T06:22",
            "2021-11-26T06:22Z",
            "2021-11-26T06:22:19",
            "2021-11-26T06:22:19.123456",
            "2021-11-26T06:22:19.Z",
            "2021-11-26T06:22:19+0300",
            "2021-11-26T06:22:19+03",
            "2021-11-26T06:22:19+24:00",
            "2021-11-26T06:22:19+03:60",
            "2021-11-26T06:22:19\u{2212}03:00",
            "2021-11-26T06:22:19 Z",
            "2021-11-26T06:22:19Z ",
            " 2021-11-26T06:22:19Z",
            "2021-11-26_06:22:19Z",
            "2021-02-29T06:22:19Z",
            "2021-02-30T06:22:19Z",
            "2021-13-01T06:22:19Z",
            "2021-00-01T06:22:19Z",
            "2021-11-00T06:22:19Z",
            "2021-11-26T24:00:00Z",
            "2021-11-26T06:60:00Z",
            "2021-11-26T06:22:61Z",
            "+2021-11-26T06:22:19Z",
            "12021-11-26T06:22:19Z",
            "２０２１-11-26T06:22:19Z",
        ] {
            let err = Timestamp::parse(bad).expect_err(bad);
            assert!(
                matches!(err, Problem::Date(_)),
                "{bad:?} gave {err:?}, not a date problem"
            );
            assert!(
                err.to_string().contains(&format!("{bad:?}")),
                "{err} names the text"
            );
        }
        let long = format!("2021-11-26T06:22:19.{}Z", "1".repeat(MAX_DATE_LEN));
        assert!(matches!(
            Timestamp::parse(&long),
            Err(Problem::TooLong { .. })
        ));
    }

    #[test]
    fn a_missing_offset_and_a_bad_calendar_say_so() {
        let no_offset = Timestamp::parse("2026-12-01T20:39:31.098161").unwrap_err();
        assert!(
            no_offset.to_string().contains("no UTC offset"),
            "{no_offset}"
        );
        let range = Timestamp::parse("2021-02-30T06:22:19Z").unwrap_err();
        assert!(range.to_string().contains("no such"), "{range}");
        let syntax = Timestamp::parse("yesterday").unwrap_err();
        assert!(
            syntax.to_string().contains("2021-11-26T06:22:19Z"),
            "{syntax}"
        );
    }

    /// docs/compatibility.md's rows that no interop test runs.
    #[test]
    fn what_runtimes_write_by_default() {
        for accepted in [
            "0001-01-01T00:00:00Z",                // Go's zero time.Time
            "2026-12-01 21:36:09.812816+00:00",    // Python str() of an aware datetime
            "2026-12-01T21:36:07.393754877+00:00", // chrono to_rfc3339()
            "2026-12-01T21:36:07.393754+00:00",    // PostgreSQL to_json(timestamptz)
        ] {
            Timestamp::parse(accepted).unwrap_or_else(|e| panic!("{accepted}: {e}"));
        }
        for refused in [
            "2026-12-01T21:36:09.812816",                   // Python, naive
            "2026-12-01T21:36+03:00",                       // Java OffsetDateTime, whole minute
            "2026-12-01T21:36:07.393+03:00[Europe/Moscow]", // Java ZonedDateTime
        ] {
            assert!(Timestamp::parse(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn only_a_text_that_is_not_the_canonical_spelling_needs_keeping() {
        for canonical in [
            "2021-11-26T06:22:19Z",
            "2021-11-26T06:22:19.500Z",
            "2021-11-26T06:22:19.500001Z",
        ] {
            assert_eq!(
                Timestamp::parse(canonical)
                    .unwrap()
                    .as_sent_if_not_canonical(),
                None
            );
        }
        for other in [
            "2021-11-26T06:22:19.000Z",
            "2021-11-26T06:22:19.5Z",
            "2021-11-26T06:22:19+00:00",
            "2021-11-26t06:22:19z",
            "2016-12-31T23:59:60Z",
        ] {
            assert_eq!(
                Timestamp::parse(other).unwrap().as_sent_if_not_canonical(),
                Some(other)
            );
        }
    }

    #[test]
    fn a_datetime_becomes_its_canonical_spelling() {
        let t = Timestamp::from(DateTime::from_timestamp(1_637_907_739, 500_000_000).unwrap());
        assert_eq!(t.as_str(), "2021-11-26T06:22:19.500Z");
        assert_eq!(Timestamp::parse(t.as_str()).unwrap(), t);
    }
}
