//! Signed tokens: what an unsubscribe, open, click or form-confirmation link names, and the
//! dashboard's session cookie, each signed with HMAC-SHA256 under the configured `secret`.
//!
//! The sender writes tokens into messages and the server checks them; both depend on this
//! small crate, so the server need not compile the sender to verify a link. It owns nothing
//! but the token format and the secret's generation.
//!
//! A token is `base64url(kind ‖ id ‖ extra) . base64url(mac[..16])`. For links the id is a
//! message id (so the server knows contact, campaign and step); a click token carries its URL,
//! so the redirect goes exactly there and nowhere else. Verification is constant-time; a
//! tampered or truncated token is simply not a token. Unsubscribe tokens never expire;
//! confirmation and session tokens carry their expiry (Unix seconds), which the caller
//! compares with its clock (this crate reads no clock).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

mod webhook;
pub use webhook::WebhookSigner;

const MAC_LEN: usize = 16;

/// What a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Unsubscribe the contact of this message.
    Unsubscribe(i64),
    /// An open of this message.
    Open(i64),
    /// A click in this message, to this URL.
    Click(i64, String),
    /// Unsubscribe link of a `test-send`: names a contact, or nobody (0).
    TestUnsubscribe(i64),
    /// A double opt-in confirmation link: a form submission's id, valid until `expires`
    /// (Unix seconds).
    Confirm {
        /// The submission being confirmed.
        id: i64,
        /// Unix seconds after which the link is expired.
        expires: i64,
    },
    /// A signed-in dashboard session, valid until `expires` (Unix seconds).
    Session {
        /// Unix seconds after which the session is over.
        expires: i64,
    },
}

/// Signs and verifies tokens with the configured secret.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

/// The operating system gave no random bytes, so no secret can be made safely.
#[derive(Debug, thiserror::Error)]
#[error(
    "the operating system's random source is not available, so no signing secret can be generated; set `secret` (NURTURE_SECRET) to a long random value"
)]
pub struct NoRandomness;

/// A new random secret (32 bytes, base64url), for when none is configured. Fails when the
/// operating system has no random source: a secret derived from anything guessable (the
/// time, an address) would let anyone forge unsubscribe and click tokens.
pub fn random_secret() -> Result<String, NoRandomness> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| NoRandomness)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

impl Signer {
    /// A signer for `secret`.
    pub fn new(secret: &str) -> Self {
        Self {
            key: secret.as_bytes().to_vec(),
        }
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| {
            // HMAC accepts keys of any length; this branch cannot run.
            <Hmac<Sha256> as KeyInit>::new_from_slice(b"nurture").unwrap_or_else(|_| unreachable!())
        });
        m.update(payload);
        m
    }

    /// The token for a claim.
    pub fn sign(&self, claim: &Claim) -> String {
        let mut payload = Vec::with_capacity(32);
        let (kind, id, extra): (u8, i64, &[u8]) = match claim {
            Claim::Unsubscribe(id) => (b'u', *id, &[]),
            Claim::Open(id) => (b'o', *id, &[]),
            Claim::Click(id, url) => (b'c', *id, url.as_bytes()),
            Claim::TestUnsubscribe(id) => (b't', *id, &[]),
            Claim::Confirm { id, expires } => {
                payload.push(b'f');
                payload.extend_from_slice(&id.to_be_bytes());
                return self.finish(payload, &expires.to_be_bytes());
            }
            Claim::Session { expires } => {
                payload.push(b's');
                payload.extend_from_slice(&0i64.to_be_bytes());
                return self.finish(payload, &expires.to_be_bytes());
            }
        };
        payload.push(kind);
        payload.extend_from_slice(&id.to_be_bytes());
        self.finish(payload, extra)
    }

    fn finish(&self, mut payload: Vec<u8>, extra: &[u8]) -> String {
        payload.extend_from_slice(extra);
        let tag = self.mac(&payload).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(&tag[..MAC_LEN])
        )
    }

    /// What a token names, if its signature checks (in constant time).
    pub fn verify(&self, token: &str) -> Option<Claim> {
        let (payload, tag) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != MAC_LEN || payload.len() < 9 {
            return None;
        }
        self.mac(&payload).verify_truncated_left(&tag).ok()?;
        let id = i64::from_be_bytes(payload[1..9].try_into().ok()?);
        match payload[0] {
            b'u' if payload.len() == 9 => Some(Claim::Unsubscribe(id)),
            b'o' if payload.len() == 9 => Some(Claim::Open(id)),
            b't' if payload.len() == 9 => Some(Claim::TestUnsubscribe(id)),
            b'c' => Some(Claim::Click(
                id,
                String::from_utf8(payload[9..].to_vec()).ok()?,
            )),
            b'f' if payload.len() == 17 => Some(Claim::Confirm {
                id,
                expires: i64::from_be_bytes(payload[9..17].try_into().ok()?),
            }),
            b's' if payload.len() == 17 => Some(Claim::Session {
                expires: i64::from_be_bytes(payload[9..17].try_into().ok()?),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tampering() {
        let s = Signer::new("secret");
        for claim in [
            Claim::Unsubscribe(42),
            Claim::Open(7),
            Claim::Click(9, "https://x.example/a?b=c".into()),
            Claim::Confirm {
                id: 5,
                expires: 1_800_000_000,
            },
            Claim::Session {
                expires: 1_800_000_001,
            },
        ] {
            let t = s.sign(&claim);
            assert_eq!(s.verify(&t), Some(claim.clone()));
            assert_eq!(Signer::new("other").verify(&t), None, "another secret");
            assert_eq!(s.verify(&t[..t.len() - 2]), None, "truncated");
            let mut bytes = t.into_bytes();
            bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
            assert_eq!(
                s.verify(&String::from_utf8(bytes).unwrap()),
                None,
                "tampered"
            );
        }
        assert_eq!(s.verify("nonsense"), None);
        assert_eq!(s.verify(""), None);
        assert_ne!(random_secret().unwrap(), random_secret().unwrap());
    }
}
