//! The database stores Unix milliseconds; the engine thinks in `DateTime<Utc>`.

use chrono::{DateTime, TimeZone, Utc};

/// Milliseconds since the epoch.
pub fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// From milliseconds since the epoch (out-of-range values clamp to the epoch).
pub fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}
