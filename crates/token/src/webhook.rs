//! Standard Webhooks signatures (<https://www.standardwebhooks.com>) for the webhook step.
//!
//! A receiver checks `webhook-signature: v1,BASE64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))`
//! with the secret it shares with nurture. A secret written `whsec_BASE64` (the form the
//! specification and its libraries generate) signs with the decoded bytes; any other secret
//! signs with its own bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Signs webhook deliveries with one secret.
#[derive(Clone)]
pub struct WebhookSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never printed.
        f.write_str("WebhookSigner(..)")
    }
}

impl WebhookSigner {
    /// A signer for `secret` (`whsec_BASE64`, or any other text used as is).
    pub fn new(secret: &str) -> Self {
        let key = secret
            .strip_prefix("whsec_")
            .and_then(|b64| STANDARD.decode(b64).ok())
            .unwrap_or_else(|| secret.as_bytes().to_vec());
        Self { key }
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length; the fallback is never taken.
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        m.update(id.as_bytes());
        m.update(b".");
        m.update(timestamp.to_string().as_bytes());
        m.update(b".");
        m.update(body);
        m
    }

    /// The `webhook-signature` header value: `v1,BASE64`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!(
            "v1,{}",
            STANDARD.encode(self.mac(id, timestamp, body).finalize().into_bytes())
        )
    }

    /// Whether `header` (space-separated `v1,BASE64` entries) holds a valid signature of
    /// this delivery; compared in constant time. The caller checks the timestamp's age.
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        header.split(' ').any(|entry| {
            let Some(sig) = entry.strip_prefix("v1,") else {
                return false;
            };
            let Ok(sig) = STANDARD.decode(sig) else {
                return false;
            };
            self.mac(id, timestamp, body).verify_slice(&sig).is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vector of the Standard Webhooks reference libraries.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    #[test]
    fn signs_like_the_reference_libraries() {
        let s = WebhookSigner::new(SECRET);
        assert_eq!(
            s.sign(ID, TS, BODY),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn verification_refuses_tampering() {
        let s = WebhookSigner::new(SECRET);
        let sig = s.sign(ID, TS, BODY);
        assert!(s.verify(ID, TS, BODY, &format!("v1,bogus {sig}")));
        assert!(!s.verify(ID, TS, br#"{"test": 1}"#, &sig));
        assert!(!s.verify(ID, TS + 1, BODY, &sig));
        assert!(!WebhookSigner::new("whsec_b3RoZXI=").verify(ID, TS, BODY, &sig));
    }
}
