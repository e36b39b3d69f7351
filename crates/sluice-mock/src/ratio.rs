//! [`Ratio`]: a fraction between 0 and 1 held as an integer number of
//! parts per million, so options stay `Eq` and every computation that uses
//! one (latency jitter, batch efficiency, fault rates) is integer math and
//! reproducible bit for bit. A share may also be written `true` (one:
//! always) or `false` (zero: never), for the options that are a switch or
//! a share, such as `batch.hold` and `batch.refuse`.
//!
//! [`Factor`]: a non-negative multiplier (flex's slowdown), in the same
//! millionths and parsed by the same rule, without the upper bound.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A fraction in `[0, 1]`, with a resolution of one part per million.
///
/// Parsed from a decimal such as `0.25`, `1` or `.5` (at most six digits
/// after the point), or from a TOML float.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ratio {
    ppm: u32,
}

impl Ratio {
    /// Parts per million in one whole.
    pub const SCALE: u32 = 1_000_000;
    pub const ZERO: Ratio = Ratio { ppm: 0 };
    pub const ONE: Ratio = Ratio { ppm: Self::SCALE };

    /// `ppm` parts per million, capped at one whole.
    pub const fn from_ppm(ppm: u32) -> Self {
        if ppm > Self::SCALE {
            Self::ONE
        } else {
            Self { ppm }
        }
    }

    /// `percent` hundredths, capped at one whole.
    pub const fn percent(percent: u32) -> Self {
        Self::from_ppm(percent.saturating_mul(10_000))
    }

    /// The fraction in parts per million.
    pub const fn ppm(self) -> u32 {
        self.ppm
    }

    pub const fn is_zero(self) -> bool {
        self.ppm == 0
    }

    /// `value × self`, rounded down.
    pub fn of(self, value: u128) -> u128 {
        value.saturating_mul(u128::from(self.ppm)) / u128::from(Self::SCALE)
    }

    /// Whether a uniform 64-bit draw falls within this fraction: true for
    /// about `ppm` draws in a million (always for one, never for zero).
    pub(crate) fn hits(self, draw: u64) -> bool {
        draw % u64::from(Self::SCALE) < u64::from(self.ppm)
    }
}

/// Why a text is not a [`Ratio`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseRatioError(String);

impl fmt::Display for ParseRatioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a fraction between 0 and 1 (such as 0.25)",
            self.0
        )
    }
}

impl std::error::Error for ParseRatioError {}

/// `text` as millionths: a decimal such as `0.25`, `3` or `.5`, at most
/// six digits after the point; `None` when it is not one or overflows.
fn parse_millionths(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty())
        || !digits(whole)
        || !digits(fraction)
        || fraction.len() > 6
    {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let fraction: u64 = format!("{fraction:0<6}").parse().ok()?;
    whole
        .checked_mul(u64::from(Ratio::SCALE))?
        .checked_add(fraction)
}

/// Millionths as a decimal, without trailing zeros.
fn show_millionths(f: &mut fmt::Formatter<'_>, millionths: u64) -> fmt::Result {
    let scale = u64::from(Ratio::SCALE);
    let (whole, fraction) = (millionths / scale, millionths % scale);
    if fraction == 0 {
        return write!(f, "{whole}");
    }
    let digits = format!("{fraction:06}");
    write!(f, "{whole}.{}", digits.trim_end_matches('0'))
}

impl FromStr for Ratio {
    type Err = ParseRatioError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        match trimmed {
            "true" => return Ok(Self::ONE),
            "false" => return Ok(Self::ZERO),
            _ => {}
        }
        parse_millionths(trimmed)
            .filter(|&ppm| ppm <= u64::from(Self::SCALE))
            .and_then(|ppm| u32::try_from(ppm).ok())
            .map(|ppm| Self { ppm })
            .ok_or_else(|| ParseRatioError(text.to_owned()))
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show_millionths(f, u64::from(self.ppm))
    }
}

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RatioVisitor)
    }
}

struct RatioVisitor;

impl Visitor<'_> for RatioVisitor {
    type Value = Ratio;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a fraction between 0 and 1, such as 0.25")
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Ratio, E> {
        if !(0.0..=1.0).contains(&value) {
            return Err(E::custom(format!("{value} is not between 0 and 1")));
        }
        // In range, so the cast cannot truncate.
        Ok(Ratio::from_ppm(
            (value * f64::from(Ratio::SCALE)).round() as u32
        ))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Ratio, E> {
        match value {
            0 => Ok(Ratio::ZERO),
            1 => Ok(Ratio::ONE),
            _ => Err(E::custom(format!("{value} is not between 0 and 1"))),
        }
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Ratio, E> {
        match u64::try_from(value) {
            Ok(value) => self.visit_u64(value),
            Err(_) => Err(E::custom(format!("{value} is not between 0 and 1"))),
        }
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Ratio, E> {
        value.parse().map_err(E::custom)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Ratio, E> {
        Ok(if value { Ratio::ONE } else { Ratio::ZERO })
    }
}

/// A multiplier of at least zero, such as `3` or `1.5`, with a resolution
/// of one millionth; at most [`Factor::MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Factor {
    millionths: u64,
}

impl Factor {
    /// One: no change.
    pub const ONE: Factor = Factor {
        millionths: Ratio::SCALE as u64,
    };
    /// The largest factor accepted, a million: more is surely a mistake.
    pub const MAX: Factor = Factor {
        millionths: (Ratio::SCALE as u64) * (Ratio::SCALE as u64),
    };

    /// `whole` times one.
    pub const fn whole(whole: u32) -> Self {
        Self {
            millionths: whole as u64 * Ratio::SCALE as u64,
        }
    }

    /// `value × self`, rounded down, saturating.
    pub fn of(self, value: u128) -> u128 {
        value.saturating_mul(u128::from(self.millionths)) / u128::from(Ratio::SCALE)
    }
}

/// Why a text is not a [`Factor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFactorError(String);

impl fmt::Display for ParseFactorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a factor between 0 and {} (such as 3 or 1.5)",
            self.0,
            Factor::MAX
        )
    }
}

impl std::error::Error for ParseFactorError {}

impl FromStr for Factor {
    type Err = ParseFactorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_millionths(text.trim())
            .filter(|&millionths| millionths <= Self::MAX.millionths)
            .map(|millionths| Self { millionths })
            .ok_or_else(|| ParseFactorError(text.to_owned()))
    }
}

impl fmt::Display for Factor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show_millionths(f, self.millionths)
    }
}

impl<'de> Deserialize<'de> for Factor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FactorVisitor)
    }
}

struct FactorVisitor;

impl Visitor<'_> for FactorVisitor {
    type Value = Factor;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a factor of at least 0, such as 3 or 1.5")
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Factor, E> {
        let max = Factor::MAX.millionths as f64 / f64::from(Ratio::SCALE);
        if !(0.0..=max).contains(&value) {
            return Err(E::custom(format!("{value} is not between 0 and {max}")));
        }
        // In range, so the cast cannot truncate.
        Ok(Factor {
            millionths: (value * f64::from(Ratio::SCALE)).round() as u64,
        })
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Factor, E> {
        self.visit_str(&value.to_string())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Factor, E> {
        self.visit_str(&value.to_string())
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Factor, E> {
        value.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimals_exactly() {
        let cases = [
            ("0", 0),
            ("1", 1_000_000),
            ("1.0", 1_000_000),
            ("0.25", 250_000),
            (".5", 500_000),
            ("0.000001", 1),
            (" 0.1 ", 100_000),
        ];
        for (text, ppm) in cases {
            assert_eq!(text.parse::<Ratio>(), Ok(Ratio::from_ppm(ppm)), "{text}");
        }
        for bad in [
            "",
            ".",
            "1.5",
            "2",
            "-0.1",
            "0.0000001",
            "abc",
            "0,5",
            "1e-3",
            "yes",
        ] {
            assert!(bad.parse::<Ratio>().is_err(), "{bad}");
        }
        assert_eq!("true".parse::<Ratio>(), Ok(Ratio::ONE));
        assert_eq!("false".parse::<Ratio>(), Ok(Ratio::ZERO));
    }

    #[test]
    fn factors_parse_scale_and_round_trip() {
        assert_eq!("3".parse::<Factor>(), Ok(Factor::whole(3)));
        assert_eq!("1.5".parse::<Factor>().unwrap().of(1_000), 1_500);
        assert_eq!("0".parse::<Factor>().unwrap().of(1_000), 0);
        assert_eq!(Factor::ONE.of(7), 7);
        for text in ["0.25", "3", "2.000001", "1000000"] {
            let factor: Factor = text.parse().unwrap();
            assert_eq!(factor.to_string(), text);
        }
        for bad in ["", "-1", "1000000.1", "x", "1e3"] {
            assert!(bad.parse::<Factor>().is_err(), "{bad}");
        }
        #[derive(Deserialize)]
        struct T {
            a: Factor,
            b: Factor,
        }
        let t: T = toml::from_str("a = 3.0\nb = 2").unwrap();
        assert_eq!((t.a, t.b), (Factor::whole(3), Factor::whole(2)));
        assert!(toml::from_str::<T>("a = -1.0\nb = 1").is_err());
    }

    #[test]
    fn displays_round_trip() {
        for ppm in [0, 1, 100_000, 250_000, 123_456, 1_000_000] {
            let ratio = Ratio::from_ppm(ppm);
            assert_eq!(ratio.to_string().parse::<Ratio>(), Ok(ratio));
        }
        assert_eq!(Ratio::percent(25).to_string(), "0.25");
        assert_eq!(Ratio::ONE.to_string(), "1");
    }

    #[test]
    fn deserializes_from_toml_numbers_and_strings() {
        #[derive(Deserialize)]
        struct T {
            a: Ratio,
            b: Ratio,
            c: Ratio,
        }
        let t: T = toml::from_str("a = 0.1\nb = 1\nc = \"0.5\"").unwrap();
        assert_eq!(
            (t.a, t.b, t.c),
            (Ratio::percent(10), Ratio::ONE, Ratio::percent(50))
        );
        let t: T = toml::from_str("a = true\nb = false\nc = 0").unwrap();
        assert_eq!((t.a, t.b), (Ratio::ONE, Ratio::ZERO));
        assert!(toml::from_str::<T>("a = 1.5\nb = 0\nc = 0").is_err());
        assert!(toml::from_str::<T>("a = 2\nb = 0\nc = 0").is_err());
    }

    #[test]
    fn scales_and_hits() {
        assert_eq!(Ratio::percent(50).of(1_000), 500);
        assert_eq!(Ratio::from_ppm(2_000_000), Ratio::ONE);
        assert!(Ratio::ONE.hits(u64::MAX));
        assert!(!Ratio::ZERO.hits(0));
        assert!(Ratio::from_ppm(1).hits(1_000_000));
        assert!(!Ratio::from_ppm(1).hits(1_000_001));
    }
}
