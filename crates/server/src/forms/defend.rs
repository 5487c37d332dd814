//! Spam defences of the public forms, all without a third-party service:
//!
//! - a **honeypot** field (`website`) that people never see and bots fill in;
//! - a **signed time stamp** in the page: a post sooner than the minimum fill time after the
//!   page was served (3 s by default) is refused, and so is a stamp that is forged or over a
//!   day old, so a bot cannot skip fetching the page;
//! - a **proof of work** in the spirit of ALTCHA: the page's script finds a number `n` such
//!   that SHA-256(`stamp:n`) starts with `difficulty` zero bits; JSON posts from scripts must
//!   carry one, an HTML post without JavaScript is let through on the two checks above;
//! - a **per-IP limit** on posts per minute (429).
//!
//! The stamp is keyed with a key derived from the link-signing secret, so every daemon of a
//! deployment accepts the stamps of the others.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use hmac::{Hmac, KeyInit, Mac};
use nurture_token::{Claim, Signer};
use sha2::{Digest, Sha256};

/// How old a stamp may be: a page left open overnight must be reloaded.
const STAMP_MAX_AGE_MS: i64 = 24 * 3600 * 1000;

/// Signs and checks the time stamps of form pages.
#[derive(Clone)]
pub(crate) struct Stamper {
    key: Vec<u8>,
}

/// Why a stamp was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StampError {
    /// Missing, forged, for another form, or too old.
    Invalid,
    /// Sooner than the minimum fill time.
    TooFast,
}

impl Stamper {
    /// The stamp key for this signer's secret. The signer keeps its secret to itself, so the
    /// key is a token it alone can make: a session that expired before 1970, which is no use
    /// as a session.
    pub(crate) fn new(signer: &Signer) -> Self {
        let seed = signer.sign(&Claim::Session { expires: i64::MIN });
        let key = Sha256::digest(format!("nurture form stamps\n{seed}").as_bytes()).to_vec();
        Self { key }
    }

    fn mac(&self, form: &str, at: i64) -> String {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        m.update(format!("{form}\n{at}").as_bytes());
        let tag = m.finalize().into_bytes();
        tag[..12].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The stamp for a page of `form` served at `now` (ms).
    pub(crate) fn stamp(&self, form: &str, now: i64) -> String {
        format!("{now}.{}", self.mac(form, now))
    }

    /// Checks a posted stamp: issued by us for `form`, at least `min_fill_ms` and at most a
    /// day before `now`.
    pub(crate) fn check(
        &self,
        form: &str,
        stamp: &str,
        now: i64,
        min_fill_ms: i64,
    ) -> Result<(), StampError> {
        let (at, mac) = stamp.split_once('.').ok_or(StampError::Invalid)?;
        let at: i64 = at.parse().map_err(|_| StampError::Invalid)?;
        let want = self.mac(form, at);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            want.as_bytes(),
            mac.as_bytes(),
        )) {
            return Err(StampError::Invalid);
        }
        if now - at > STAMP_MAX_AGE_MS || at > now + 60_000 {
            return Err(StampError::Invalid);
        }
        if now - at < min_fill_ms {
            return Err(StampError::TooFast);
        }
        Ok(())
    }
}

/// Whether SHA-256(`challenge:nonce`) starts with `difficulty` zero bits.
pub(crate) fn proof_ok(challenge: &str, nonce: &str, difficulty: u32) -> bool {
    if nonce.is_empty() || nonce.len() > 20 || !nonce.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let hash = Sha256::digest(format!("{challenge}:{nonce}").as_bytes());
    let mut bits = difficulty;
    for byte in hash.iter() {
        if bits == 0 {
            return true;
        }
        if bits >= 8 {
            if *byte != 0 {
                return false;
            }
            bits -= 8;
        } else {
            return byte >> (8 - bits) == 0;
        }
    }
    bits == 0
}

/// Solves a challenge (for tests and for `forms snippet` checks): the first nonce that works.
pub fn solve(challenge: &str, difficulty: u32) -> String {
    (0u64..)
        .map(|n| n.to_string())
        .find(|n| proof_ok(challenge, n, difficulty))
        .unwrap_or_default()
}

/// Posts per IP address in the last minute (a sliding window). State of one server
/// instance: every test server starts with an empty one.
#[derive(Debug, Default)]
pub(crate) struct IpLimiter {
    recent: Mutex<HashMap<IpAddr, VecDeque<i64>>>,
}

impl IpLimiter {
    /// Counts a post from `ip` at `now`; false when it is over `per_minute` in the minute
    /// up to `now` (a refused post counts too: a flood stays refused while it goes on).
    pub(crate) fn allow(&self, ip: IpAddr, now: i64, per_minute: u32) -> bool {
        let since = now - 60_000;
        let mut map = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            // A flood from many addresses: forget those quiet for a minute.
            map.retain(|_, times| times.back().is_some_and(|t| *t > since));
        }
        let times = map.entry(ip).or_default();
        while times.front().is_some_and(|t| *t <= since) {
            times.pop_front();
        }
        let cap = usize::try_from(per_minute).unwrap_or(usize::MAX);
        let allowed = times.len() < cap;
        times.push_back(now);
        // Bounded: more than the limit need not be remembered.
        while times.len() > cap.saturating_add(1) {
            times.pop_front();
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_check_signature_form_and_age() {
        let s = Stamper::new(&Signer::new("k"));
        let t = s.stamp("ebook", 1_000_000);
        assert_eq!(s.check("ebook", &t, 1_004_000, 3000), Ok(()));
        assert_eq!(
            s.check("ebook", &t, 1_001_000, 3000),
            Err(StampError::TooFast)
        );
        assert_eq!(
            s.check("other", &t, 1_004_000, 3000),
            Err(StampError::Invalid)
        );
        assert_eq!(
            s.check("ebook", &t, 1_000_000 + STAMP_MAX_AGE_MS + 1, 3000),
            Err(StampError::Invalid)
        );
        let forged = t.replacen("1000000", "999000", 1);
        assert_eq!(
            s.check("ebook", &forged, 1_004_000, 3000),
            Err(StampError::Invalid)
        );
        let other = Stamper::new(&Signer::new("other"));
        assert_eq!(
            other.check("ebook", &t, 1_004_000, 3000),
            Err(StampError::Invalid)
        );
    }

    #[test]
    fn proofs_of_work_are_checked() {
        let n = solve("abc", 8);
        assert!(proof_ok("abc", &n, 8));
        assert!(!proof_ok("abd", &n, 16) || !proof_ok("abc", &n, 16));
        assert!(!proof_ok("abc", "", 0));
        assert!(!proof_ok("abc", "x1", 0));
    }

    #[test]
    fn the_ip_limit_counts_per_minute() {
        let l = IpLimiter::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.allow(ip, 60_000, 3));
        }
        assert!(!l.allow(ip, 60_001, 3));
        assert!(l.allow("192.0.2.2".parse().unwrap(), 60_001, 3));
        assert!(
            !l.allow(ip, 119_999, 3),
            "still within a minute of the last posts"
        );
        assert!(l.allow(ip, 200_000, 3));
    }
}
