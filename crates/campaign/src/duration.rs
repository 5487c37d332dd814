//! Durations as marketers write them: `45m`, `6h`, `2d`, `1w`, `1d12h`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A non-negative wait, parsed from `1w2d3h4m5s`-style text. Always a whole number of seconds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Delay(i64);

impl Delay {
    /// A delay of `secs` seconds.
    pub const fn from_secs(secs: i64) -> Self {
        Self(secs)
    }

    /// Length in seconds.
    pub const fn as_secs(self) -> i64 {
        self.0
    }

    /// As a chrono duration, for date arithmetic.
    pub fn to_chrono(self) -> chrono::Duration {
        chrono::Duration::seconds(self.0)
    }

    /// True for a zero wait.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayError(String);

impl fmt::Display for DelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DelayError {}

const UNITS: [(char, i64); 5] = [
    ('w', 7 * 86_400),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

impl FromStr for Delay {
    type Err = DelayError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text.is_empty() {
            return Err(DelayError("a duration cannot be empty".into()));
        }
        if text.contains(char::is_whitespace) {
            return Err(DelayError("write it without spaces".into()));
        }
        let mut total: i64 = 0;
        let mut digits = String::new();
        let mut last_unit = usize::MAX;
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let Some(pos) = UNITS.iter().position(|(u, _)| *u == c) else {
                return Err(DelayError(format!("`{c}` is not a unit")));
            };
            if digits.is_empty() {
                return Err(DelayError(format!("`{c}` needs a number before it")));
            }
            if last_unit != usize::MAX && pos <= last_unit {
                return Err(DelayError(
                    "units must go from largest to smallest, each once (`1d12h`)".into(),
                ));
            }
            last_unit = pos;
            let n: i64 = digits
                .parse()
                .map_err(|_| DelayError("the number is too large".into()))?;
            total = n
                .checked_mul(UNITS[pos].1)
                .and_then(|x| total.checked_add(x))
                .filter(|t| *t <= 3650 * 86_400)
                .ok_or_else(|| DelayError("a duration can be at most ten years".into()))?;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(DelayError(format!(
                "`{digits}` has no unit (write `{digits}d`, `{digits}h` or `{digits}m`)"
            )));
        }
        Ok(Self(total))
    }
}

impl fmt::Display for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0m");
        }
        let mut rest = self.0;
        for (unit, secs) in UNITS {
            if rest >= secs {
                write!(f, "{}{unit}", rest / secs)?;
                rest %= secs;
            }
        }
        Ok(())
    }
}

impl TryFrom<String> for Delay {
    type Error = DelayError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Delay> for String {
    fn from(d: Delay) -> String {
        d.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_combinations() {
        for (text, secs) in [
            ("45m", 2_700),
            ("6h", 21_600),
            ("2d", 172_800),
            ("1w", 604_800),
            ("1d12h", 129_600),
            ("90s", 90),
            ("0m", 0),
        ] {
            assert_eq!(text.parse::<Delay>().unwrap().as_secs(), secs, "{text}");
        }
    }

    #[test]
    fn rejects_malformed_durations() {
        for text in [
            "",
            "2",
            "d",
            "2x",
            "12h1d",
            "1d1d",
            "2 days",
            "-1d",
            "99999999999w",
        ] {
            assert!(text.parse::<Delay>().is_err(), "{text} should fail");
        }
    }

    #[test]
    fn displays_canonically() {
        assert_eq!("36h".parse::<Delay>().unwrap().to_string(), "1d12h");
        assert_eq!("14d".parse::<Delay>().unwrap().to_string(), "2w");
    }
}
