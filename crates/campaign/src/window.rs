//! Send windows: the days and hours in which a campaign may deliver, and the pure function
//! that moves a due time to the window's next opening (DST-correct, in any time zone).

use std::fmt;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Which clock a window is read on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowZone {
    /// The contact's `timezone` attribute, else the configured default.
    Contact,
    /// A fixed IANA zone.
    Named(Tz),
}

/// Minutes since local midnight, `start < end`, `end` at most 24:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hours {
    /// First minute inside the window.
    pub start: u16,
    /// First minute after the window.
    pub end: u16,
}

impl Hours {
    /// Parses `"09:00-17:00"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not an hour range; write it as \"09:00-17:00\"");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let start = parse_hhmm(a.trim()).ok_or_else(bad)?;
        let end = parse_hhmm(b.trim()).ok_or_else(bad)?;
        if start >= end {
            return Err(format!(
                "the window `{s}` ends before it starts; windows cannot cross midnight"
            ));
        }
        Ok(Self { start, end })
    }
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// When email steps may be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendWindow {
    /// Allowed days (every day when all seven are listed).
    pub days: Vec<Weekday>,
    /// Allowed local hours; the whole day when `None`.
    pub hours: Option<Hours>,
    /// Whose clock.
    pub timezone: WindowZone,
}

impl SendWindow {
    /// The zone to read this window in, for a contact whose own zone is `contact_tz`.
    pub fn zone(&self, contact_tz: Tz) -> Tz {
        match self.timezone {
            WindowZone::Contact => contact_tz,
            WindowZone::Named(tz) => tz,
        }
    }

    /// The first instant at or after `t` inside the window, read in `tz`. Returns `t` itself
    /// when it is already inside. Local times skipped by a DST change open at the first valid
    /// instant after them.
    pub fn next_opening(&self, t: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        let local = t.with_timezone(&tz);
        let (start, end) = self
            .hours
            .map_or((0, 24 * 60), |h| (u32::from(h.start), u32::from(h.end)));
        let minute_of_day = local.hour_minute();
        for offset in 0..8 {
            let Some(date) = local
                .date_naive()
                .checked_add_signed(Duration::days(offset))
            else {
                break;
            };
            if !self.days.contains(&date.weekday()) {
                continue;
            }
            if offset == 0 {
                if minute_of_day >= end {
                    continue;
                }
                if minute_of_day >= start {
                    return t;
                }
            }
            let opening = resolve_local(tz, date, start);
            if opening >= t {
                return opening;
            }
            return t;
        }
        // No allowed day at all: validation refuses empty `days`, so this is unreachable in
        // practice; returning `t` never loses a step.
        t
    }
}

trait MinuteOfDay {
    fn hour_minute(&self) -> u32;
}

impl MinuteOfDay for DateTime<Tz> {
    fn hour_minute(&self) -> u32 {
        use chrono::Timelike;
        self.hour() * 60 + self.minute()
    }
}

/// The instant a local wall-clock time names in `tz`; a time skipped by DST moves forward
/// to the first instant after the gap, an ambiguous one takes the earlier instant.
fn resolve_local(tz: Tz, date: NaiveDate, minute: u32) -> DateTime<Utc> {
    let base = date.and_time(NaiveTime::MIN) + Duration::minutes(i64::from(minute));
    for shift in 0..=180 {
        let candidate = base + Duration::minutes(shift);
        match tz.from_local_datetime(&candidate) {
            LocalResult::Single(dt) => return dt.with_timezone(&Utc),
            LocalResult::Ambiguous(a, _) => return a.with_timezone(&Utc),
            LocalResult::None => continue,
        }
    }
    Utc.from_utc_datetime(&base)
}

/// Parses a day name (`mon` .. `sun`, or the full English name).
pub fn parse_weekday(s: &str) -> Option<Weekday> {
    Some(match s.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tuesday" => Weekday::Tue,
        "wed" | "wednesday" => Weekday::Wed,
        "thu" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        "sun" | "sunday" => Weekday::Sun,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn business() -> SendWindow {
        SendWindow {
            days: vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
            hours: Some(Hours::parse("09:00-17:00").unwrap()),
            timezone: WindowZone::Contact,
        }
    }

    #[test]
    fn window_cases() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let w = business();
        // (due, expected) in UTC; New York is UTC-4 in summer, UTC-5 in winter.
        let cases = [
            // Wednesday 10:00 local: inside.
            ("2026-06-10T14:00:00Z", "2026-06-10T14:00:00Z"),
            // Wednesday 07:00 local: opens 09:00 same day.
            ("2026-06-10T11:00:00Z", "2026-06-10T13:00:00Z"),
            // Wednesday 17:00 local exactly: closed, opens Thursday 09:00.
            ("2026-06-10T21:00:00Z", "2026-06-11T13:00:00Z"),
            // Saturday noon: opens Monday 09:00.
            ("2026-06-13T16:00:00Z", "2026-06-15T13:00:00Z"),
            // Saturday 31 Oct 2026 noon EDT; DST ends Sunday 1 Nov: Monday 09:00 is EST (UTC-5).
            ("2026-10-31T16:00:00Z", "2026-11-02T14:00:00Z"),
            // Saturday 7 Mar 2026 noon EST; DST starts Sunday 8 Mar: Monday 09:00 is EDT (UTC-4).
            ("2026-03-07T17:00:00Z", "2026-03-09T13:00:00Z"),
        ];
        for (due, want) in cases {
            assert_eq!(w.next_opening(at(due), ny), at(want), "due {due}");
        }
    }

    #[test]
    fn opening_in_a_dst_gap_moves_past_it() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let w = SendWindow {
            days: vec![Weekday::Sun],
            hours: Some(Hours::parse("02:30-04:00").unwrap()),
            timezone: WindowZone::Contact,
        };
        // 02:30 does not exist on 8 Mar 2026 in New York; first valid instant is 03:00 EDT.
        assert_eq!(
            w.next_opening(at("2026-03-08T05:00:00Z"), ny),
            at("2026-03-08T07:00:00Z")
        );
    }

    #[test]
    fn hours_are_checked() {
        assert!(Hours::parse("09:00-17:00").is_ok());
        assert!(Hours::parse("00:00-24:00").is_ok());
        for bad in ["9-17", "17:00-09:00", "09:00-25:00", "09:60-10:00", "09:00"] {
            assert!(Hours::parse(bad).is_err(), "{bad}");
        }
    }
}
