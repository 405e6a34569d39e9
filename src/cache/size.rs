//! Byte counts as people write them in configuration: `268435456`,
//! `256MiB`, `1GiB`, `500MB`.

use std::fmt;
use std::str::FromStr;

/// A number of bytes, parsed from a plain count or a count with a unit.
///
/// Units are decimal (`kB`/`KB`, `MB`, `GB`, `TB`: powers of 1000) or
/// binary (`KiB`, `MiB`, `GiB`, `TiB`: powers of 1024), with `B` for bytes;
/// they are matched without regard to case and may follow the number after
/// spaces. The count is a whole number: write `1536MiB` for 1.5 GiB.
///
/// # Examples
///
/// ```
/// use order_cache::{ByteSize, ByteSizeError};
///
/// assert_eq!("256MiB".parse::<ByteSize>().unwrap().as_u64(), 256 << 20);
/// assert_eq!("1 GiB".parse::<ByteSize>().unwrap().as_u64(), 1 << 30);
/// assert_eq!("500MB".parse::<ByteSize>().unwrap().as_u64(), 500_000_000);
/// assert_eq!("4096".parse::<ByteSize>().unwrap().as_u64(), 4096);
/// assert!(matches!("1.5GiB".parse::<ByteSize>(), Err(ByteSizeError::Number { .. })));
/// assert!(matches!("12 parsecs".parse::<ByteSize>(), Err(ByteSizeError::Unit { .. })));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

/// Why a text is not a [`ByteSize`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ByteSizeError {
    /// Nothing but spaces.
    #[error("no byte count given")]
    Empty,
    /// The text does not start with a whole number.
    #[error("{text:?} does not start with a whole number of bytes")]
    Number {
        /// The text as given.
        text: String,
    },
    /// The unit after the number is not one of those known.
    #[error("unknown unit {unit:?}: use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB")]
    Unit {
        /// The unit as given.
        unit: String,
    },
    /// The count does not fit in 64 bits.
    #[error("{text:?} is more bytes than 2^64")]
    Overflow {
        /// The text as given.
        text: String,
    },
}

/// The units and their sizes. No bare `k`, `M` or `G`: whether they mean
/// powers of 1000 or of 1024 depends on who writes them.
const UNITS: [(&str, u64); 10] = [
    ("", 1),
    ("b", 1),
    ("kb", 1000),
    ("mb", 1000 * 1000),
    ("gb", 1000 * 1000 * 1000),
    ("tb", 1000 * 1000 * 1000 * 1000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

impl ByteSize {
    /// This many bytes.
    pub const fn new(bytes: u64) -> ByteSize {
        ByteSize(bytes)
    }

    /// The count, in bytes.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<u64> for ByteSize {
    fn from(bytes: u64) -> Self {
        ByteSize(bytes)
    }
}

impl From<ByteSize> for u64 {
    fn from(size: ByteSize) -> Self {
        size.0
    }
}

impl FromStr for ByteSize {
    type Err = ByteSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text.is_empty() {
            return Err(ByteSizeError::Empty);
        }
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = text.split_at(digits);
        if number.is_empty() || unit.starts_with(['.', ',', '_']) {
            return Err(ByteSizeError::Number { text: s.to_owned() });
        }
        let unit = unit.trim_start();
        let scale = UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|&(_, scale)| scale)
            .ok_or_else(|| ByteSizeError::Unit {
                unit: unit.to_owned(),
            })?;
        let overflow = || ByteSizeError::Overflow { text: s.to_owned() };
        // Only digits are left, so parsing fails on overflow alone.
        let number: u64 = number.parse().map_err(|_| overflow())?;
        number.checked_mul(scale).map(ByteSize).ok_or_else(overflow)
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the count, so that the text
    /// parses back to the same count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if self.0 != 0 && self.0.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}B", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<u64, ByteSizeError> {
        s.parse::<ByteSize>().map(ByteSize::as_u64)
    }

    #[test]
    fn units_are_decimal_or_binary_and_ignore_case() {
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse(" 42 "), Ok(42));
        assert_eq!(parse("42B"), Ok(42));
        assert_eq!(parse("2kB"), Ok(2000));
        assert_eq!(parse("2KiB"), Ok(2048));
        assert_eq!(parse("256mib"), Ok(256 << 20));
        assert_eq!(parse("500 MB"), Ok(500_000_000));
        assert_eq!(parse("1GiB"), Ok(1 << 30));
        assert_eq!(parse("3TB"), Ok(3_000_000_000_000));
        assert_eq!(parse("16384TiB"), Ok(1 << 54));
    }

    #[test]
    fn each_mistake_has_its_own_error() {
        assert_eq!(parse("  "), Err(ByteSizeError::Empty));
        assert!(matches!(parse("MiB"), Err(ByteSizeError::Number { .. })));
        assert!(matches!(parse("-1"), Err(ByteSizeError::Number { .. })));
        assert!(matches!(parse("1.5GiB"), Err(ByteSizeError::Number { .. })));
        assert!(matches!(parse("1_000"), Err(ByteSizeError::Number { .. })));
        assert_eq!(
            parse("12 parsecs"),
            Err(ByteSizeError::Unit {
                unit: "parsecs".into()
            })
        );
        assert!(matches!(parse("16384PiB"), Err(ByteSizeError::Unit { .. })));
        assert!(matches!(parse("256M"), Err(ByteSizeError::Unit { .. })));
        assert!(matches!(
            parse("99999999999999999999"),
            Err(ByteSizeError::Overflow { .. })
        ));
        assert!(matches!(
            parse("17000000TiB"),
            Err(ByteSizeError::Overflow { .. })
        ));
    }

    #[test]
    fn display_parses_back_to_the_same_count() {
        for n in [0, 1, 1000, 1024, 1536, 256 << 20, (1 << 30) + 1, u64::MAX] {
            let shown = ByteSize(n).to_string();
            assert_eq!(parse(&shown), Ok(n), "{shown}");
        }
        assert_eq!(ByteSize(256 << 20).to_string(), "256MiB");
    }
}
