//! Cron schedules for schedule-triggered campaigns.
//!
//! Marketers write standard cron: five fields (`0 9 * * mon`), or six with seconds first. The
//! `cron` crate wants seconds and numbers Sunday as 1, so the text is translated before it is
//! parsed: `0` and `7` mean Sunday, as in every crontab.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// A parsed cron expression, keeping the text the marketer wrote.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cron {
    text: String,
    schedule: cron::Schedule,
}

impl PartialEq for Cron {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cron({:?})", self.text)
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Cron {
    /// The first firing strictly after `t`, on the clock of `tz`.
    pub fn next_after(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&t.with_timezone(&tz))
            .next()
            .map(|d| d.with_timezone(&Utc))
    }
}

impl FromStr for Cron {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fields: Vec<&str> = s.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(format!(
                    "a cron schedule has 5 fields (minute hour day month weekday), this one has {n}"
                ));
            }
        };
        let dow = translate_weekdays(rest[4])?;
        let expr = format!(
            "{seconds} {} {} {} {} {dow}",
            rest[0], rest[1], rest[2], rest[3]
        );
        let schedule =
            cron::Schedule::from_str(&expr).map_err(|e| format!("invalid cron schedule: {e}"))?;
        if schedule.upcoming(Utc).next().is_none() {
            return Err("this cron schedule never fires".into());
        }
        Ok(Self {
            text: s.trim().to_string(),
            schedule,
        })
    }
}

/// Rewrites numeric weekdays from crontab numbering (0 or 7 = Sunday) to the `cron` crate's
/// (1 = Sunday); names and `*` pass through.
fn translate_weekdays(field: &str) -> Result<String, String> {
    let mut out = Vec::new();
    for part in field.split(',') {
        let (base, step) = match part.split_once('/') {
            Some((b, s)) => (b, Some(s)),
            None => (part, None),
        };
        let numeric = |x: &str| x.parse::<u32>().ok();
        let range = match base.split_once('-') {
            Some((a, b)) => numeric(a).zip(numeric(b)),
            None => numeric(base).map(|a| (a, a)),
        };
        let Some((a, b)) = range else {
            if base == "*" && step.is_some() {
                return Err("a step on the weekday field (`*/2`) is not supported".into());
            }
            out.push(part.to_string());
            continue;
        };
        if a > 7 || b > 7 || a > b {
            return Err(format!(
                "`{part}` is not a weekday range (0-7, Sunday is 0 or 7)"
            ));
        }
        let step: u32 = match step {
            Some(s) => s
                .parse()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| format!("`{part}` has a bad step"))?,
            None => 1,
        };
        let mut day = a;
        while day <= b {
            out.push(((day % 7) + 1).to_string());
            day += step;
        }
    }
    Ok(out.join(","))
}

impl TryFrom<String> for Cron {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Cron> for String {
    fn from(c: Cron) -> String {
        c.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_field_with_name_in_a_zone() {
        let c: Cron = "0 9 * * mon".parse().unwrap();
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // Sunday 22 Nov 2026 -> Monday 23 Nov 09:00 CET = 08:00 UTC.
        assert_eq!(
            c.next_after(at("2026-11-22T12:00:00Z"), berlin),
            Some(at("2026-11-23T08:00:00Z"))
        );
    }

    #[test]
    fn numeric_weekdays_follow_crontab() {
        let utc: Tz = "UTC".parse().unwrap();
        let sunday: Cron = "0 9 * * 0".parse().unwrap();
        assert_eq!(
            sunday.next_after(at("2026-11-23T00:00:00Z"), utc),
            Some(at("2026-11-29T09:00:00Z"))
        );
        let weekdays: Cron = "30 8 * * 1-5".parse().unwrap();
        // Saturday 28 Nov -> Monday 30 Nov.
        assert_eq!(
            weekdays.next_after(at("2026-11-28T00:00:00Z"), utc),
            Some(at("2026-11-30T08:30:00Z"))
        );
    }

    #[test]
    fn six_fields_take_seconds() {
        let c: Cron = "30 0 9 * * *".parse().unwrap();
        let utc: Tz = "UTC".parse().unwrap();
        assert_eq!(
            c.next_after(at("2026-11-22T10:00:00Z"), utc),
            Some(at("2026-11-23T09:00:30Z"))
        );
    }

    #[test]
    fn rejects_bad_expressions() {
        for bad in [
            "",
            "0 9 * *",
            "0 9 * * mon extra field",
            "61 9 * * *",
            "0 9 * * 8",
            "x y z w v",
        ] {
            assert!(bad.parse::<Cron>().is_err(), "{bad}");
        }
    }
}
