//! Cron schedules for schedule-triggered campaigns.
//!
//! Marketers write standard crontab: five fields (`0 9 * * mon`), or six with seconds first
//! (`30 0 9 * * mon`). The meaning is vixie cron's and POSIX's, which the `croner` crate
//! implements: when both day-of-month and day-of-week are restricted (neither is `*`), a day
//! matches if it matches *either* — `0 9 1 * mon` fires on the 1st of every month and on every
//! Monday. `0` and `7` both mean Sunday.
//!
//! Time zones follow vixie cron across daylight saving changes: a fixed time that does not
//! exist on a spring-forward day (02:30 in Berlin on the last Sunday of March) fires at the
//! first minute after the gap, once; a fixed time that happens twice on a fall-back day fires
//! once, at its first occurrence.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

/// A parsed cron expression, keeping the text the marketer wrote.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cron {
    text: String,
    /// Boxed: croner's parsed pattern is some 300 bytes, and `Trigger` holds one inline.
    schedule: Box<croner::Cron>,
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
            .find_next_occurrence(&t.with_timezone(&tz), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

impl FromStr for Cron {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Counted here so that croner's extras (a year field, `@daily`) stay out of the
        // language: SPEC promises five fields, or six with seconds.
        let n = s.split_whitespace().count();
        if n != 5 && n != 6 {
            return Err(format!(
                "a cron schedule has 5 fields (minute hour day month weekday), this one has {n}"
            ));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let schedule = parser.parse(s).map_err(|e| explain(&parser, s, &e))?;
        // From a fixed time, not the clock: a schedule that can never fire (`0 9 30 2 *`)
        // finds nothing in the next centuries either.
        let from = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        if from.is_none_or(|t| schedule.find_next_occurrence(&t, false).is_err()) {
            return Err("this cron schedule never fires".into());
        }
        Ok(Self {
            text: s.trim().to_string(),
            schedule: Box::new(schedule),
        })
    }
}

/// Names the field croner refused (its own messages do not: "Number out of bounds"), found
/// by parsing each field alone among `*`s.
fn explain(parser: &CronParser, s: &str, e: &croner::errors::CronError) -> String {
    let fields: Vec<&str> = s.split_whitespace().collect();
    let names: &[(&str, &str)] = &[
        ("second", "0-59"),
        ("minute", "0-59"),
        ("hour", "0-23"),
        ("day of month", "1-31"),
        ("month", "1-12 or jan-dec"),
        ("day of week", "0-7 or sun-sat, Sunday is 0 or 7"),
    ];
    let names = &names[6 - fields.len()..];
    for (i, (field, (name, range))) in fields.iter().zip(names).enumerate() {
        let mut probe = vec!["*"; fields.len()];
        probe[i] = field;
        if parser.parse(&probe.join(" ")).is_err() {
            return format!("`{field}` is not a valid {name} ({range})");
        }
    }
    e.to_string()
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

    /// The next `n` firings after `from`.
    fn firings(cron: &str, tz: &str, from: &str, n: usize) -> Vec<DateTime<Utc>> {
        let c: Cron = cron.parse().unwrap();
        let tz: Tz = tz.parse().unwrap();
        let mut t = at(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = c.next_after(t, tz).unwrap();
            out.push(t);
        }
        out
    }

    #[test]
    fn day_of_month_and_day_of_week_follow_crontab() {
        // November 2026: the 1st is a Sunday, Mondays are the 2nd, 9th, 16th, 23rd, 30th;
        // December: the 1st is a Tuesday, the 7th a Monday. In UTC to read the days plainly.
        let table: &[(&str, &str, &[&str])] = &[
            // Both set: the 1st (whatever its weekday) OR any Monday.
            (
                "0 9 1 * mon",
                "2026-10-31T00:00:00Z",
                &[
                    "2026-11-01T09:00:00Z",
                    "2026-11-02T09:00:00Z",
                    "2026-11-09T09:00:00Z",
                    "2026-11-16T09:00:00Z",
                    "2026-11-23T09:00:00Z",
                    "2026-11-30T09:00:00Z",
                    "2026-12-01T09:00:00Z",
                    "2026-12-07T09:00:00Z",
                ],
            ),
            // `*` in the day of month: Mondays only.
            (
                "0 9 * * mon",
                "2026-10-31T00:00:00Z",
                &[
                    "2026-11-02T09:00:00Z",
                    "2026-11-09T09:00:00Z",
                    "2026-11-16T09:00:00Z",
                ],
            ),
            // `*` in the day of week: the 1st only.
            (
                "0 9 1 * *",
                "2026-10-31T00:00:00Z",
                &[
                    "2026-11-01T09:00:00Z",
                    "2026-12-01T09:00:00Z",
                    "2027-01-01T09:00:00Z",
                ],
            ),
            // A list and a range in both fields: the 15th, and Saturdays and Sundays.
            (
                "0 9 15 * sat,sun",
                "2026-11-09T00:00:00Z",
                &[
                    "2026-11-14T09:00:00Z",
                    "2026-11-15T09:00:00Z",
                    "2026-11-21T09:00:00Z",
                ],
            ),
            // Six fields, both set, with seconds.
            (
                "30 0 9 1 * 1",
                "2026-10-31T00:00:00Z",
                &["2026-11-01T09:00:30Z", "2026-11-02T09:00:30Z"],
            ),
        ];
        for (cron, from, want) in table {
            let want: Vec<DateTime<Utc>> = want.iter().map(|s| at(s)).collect();
            assert_eq!(
                firings(cron, "UTC", from, want.len()),
                want,
                "{cron} after {from}"
            );
        }
    }

    #[test]
    fn five_field_with_name_in_a_zone() {
        // Sunday 22 Nov 2026 -> Monday 23 Nov 09:00 CET = 08:00 UTC.
        assert_eq!(
            firings("0 9 * * mon", "Europe/Berlin", "2026-11-22T12:00:00Z", 1),
            [at("2026-11-23T08:00:00Z")]
        );
    }

    #[test]
    fn numeric_weekdays_follow_crontab() {
        let table: &[(&str, &str, &str)] = &[
            ("0 9 * * 0", "2026-11-23T00:00:00Z", "2026-11-29T09:00:00Z"),
            ("0 9 * * 7", "2026-11-23T00:00:00Z", "2026-11-29T09:00:00Z"),
            // Saturday 28 Nov -> Monday 30 Nov.
            (
                "30 8 * * 1-5",
                "2026-11-28T00:00:00Z",
                "2026-11-30T08:30:00Z",
            ),
        ];
        for (cron, from, want) in table {
            assert_eq!(firings(cron, "UTC", from, 1), [at(want)], "{cron}");
        }
    }

    #[test]
    fn six_fields_take_seconds() {
        assert_eq!(
            firings("30 0 9 * * *", "UTC", "2026-11-22T10:00:00Z", 1),
            [at("2026-11-23T09:00:30Z")]
        );
    }

    #[test]
    fn daylight_saving_in_berlin() {
        // Spring forward, Sunday 29 March 2026: 02:00 CET becomes 03:00 CEST, so 02:30 does not
        // exist that day. It fires once, at 03:00 CEST (01:00 UTC), the first minute after
        // the gap; the next day is back at 02:30 CEST.
        assert_eq!(
            firings("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 2),
            [at("2026-03-29T01:00:00Z"), at("2026-03-30T00:30:00Z")]
        );
        // Fall back, Sunday 25 October 2026: 03:00 CEST becomes 02:00 CET, so 02:30 happens
        // twice. It fires once, at the first (CEST, 00:30 UTC), not again an hour later.
        assert_eq!(
            firings("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
            [at("2026-10-25T00:30:00Z"), at("2026-10-26T01:30:00Z")]
        );
        // Times away from the change keep their wall-clock hour on either side of it.
        assert_eq!(
            firings("0 9 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
            [at("2026-10-25T08:00:00Z"), at("2026-10-26T08:00:00Z")]
        );
    }

    #[test]
    fn rejects_bad_expressions() {
        for bad in [
            "",
            "0 9 * *",
            "0 9 * * mon extra field",
            "@daily",
            "61 9 * * *",
            "0 25 * * mon",
            "0 9 * * 8",
            "0 9 32 * *",
            "x y z w v",
            "0 9 30 2 *",
        ] {
            assert!(bad.parse::<Cron>().is_err(), "{bad}");
        }
    }

    #[test]
    fn keeps_the_text_and_round_trips_through_json() {
        let c: Cron = " 0 9 1 * mon ".parse().unwrap();
        assert_eq!(c.to_string(), "0 9 1 * mon");
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, "\"0 9 1 * mon\"");
        let back: Cron = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }
}
