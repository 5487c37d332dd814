//! DKIM signing (RFC 6376), outside lettre: `rsa-sha256` with aws-lc-rs's RSA, or `ed25519-sha256`
//! (RFC 8463) when the key is an Ed25519 key, over `simple` or `relaxed` canonicalisation of
//! the header fields and the body.
//!
//! Why not lettre's signer: it signs with the pure-Rust `rsa` crate, ~2 ms of CPU per message
//! on this project's machines, and a signature per message then bounds the whole send
//! pipeline. ring's RSA took ~1.7 ms here as well; aws-lc-rs (AWS-LC, OpenSSL's lineage with
//! its assembly Montgomery multiplication, built from source by `cc` with no system library)
//! takes a fraction of that, and Ed25519 (ring) a few microseconds (SPEC §5
//! allows either, as long as the signature verifies independently; the tests check every
//! combination with dkimpy).
//!
//! The signer works on the finished RFC 5322 bytes (CRLF line ends, as lettre formats them)
//! and puts its `DKIM-Signature` field first.

use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use ring::digest;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;

/// The headers a signature covers (SPEC §5), in the order of its `h=` tag.
pub const SIGNED_HEADERS: [&str; 7] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// A canonicalisation algorithm (RFC 6376 §3.4), for the header or the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canonicalization {
    /// Bytes as they are (only empty lines ending the body are ignored).
    Simple,
    /// White space runs become one space, line ends lose theirs, header names lower case and
    /// header lines unfolded: survives relays that rewrap or re-space.
    Relaxed,
}

impl Canonicalization {
    fn name(self) -> &'static str {
        match self {
            Self::Simple => "simple",
            Self::Relaxed => "relaxed",
        }
    }
}

/// Why a DKIM key cannot be used or a message cannot be signed.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    /// The PEM is not a private key nurture can sign with.
    #[error(
        "the DKIM private key is not a usable key in PEM (RSA of 2048 to 4096 bits in PKCS#1 or PKCS#8, or Ed25519 in PKCS#8): {0}"
    )]
    Key(String),
    /// The message has no blank line between its header and body.
    #[error("cannot DKIM-sign the message: it has no body")]
    NoBody,
    /// `dkim_algorithm` names another algorithm than the key's, or none nurture knows.
    #[error(
        "dkim_algorithm is `{given}` but the DKIM private key signs {key} (`rsa` or `ed25519`)"
    )]
    Algorithm {
        /// What the configuration said.
        given: String,
        /// What the key signs.
        key: &'static str,
    },
    /// The RSA operation failed (aws-lc-rs gives no detail).
    #[error("cannot DKIM-sign the message: the signature operation failed")]
    Sign,
}

enum Key {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// Signs messages with DKIM for one domain and selector.
pub struct DkimSigner {
    domain: String,
    selector: String,
    key: Key,
    header: Canonicalization,
    body: Canonicalization,
    rng: aws_lc_rs::rand::SystemRandom,
}

impl std::fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        write!(
            f,
            "DkimSigner({}, s={}, d={}, c={}/{})",
            self.algorithm(),
            self.selector,
            self.domain,
            self.header.name(),
            self.body.name()
        )
    }
}

impl DkimSigner {
    /// A signer for `domain`/`selector`, relaxed/relaxed, with a key in PEM: RSA as
    /// `openssl genrsa` writes it (PKCS#8 `BEGIN PRIVATE KEY`, or PKCS#1 `BEGIN RSA PRIVATE
    /// KEY`) signs `rsa-sha256`; Ed25519 (`openssl genpkey -algorithm ed25519`, PKCS#8) signs
    /// `ed25519-sha256`.
    pub fn new(domain: &str, selector: &str, pem: &str) -> Result<Self, DkimError> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| DkimError::Key(e.to_string()))?;
        let key = match &der {
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der())
                .map(Key::Rsa)
                .map_err(|e| DkimError::Key(e.to_string()))?,
            PrivateKeyDer::Pkcs8(k) => {
                let bytes = k.secret_pkcs8_der();
                match RsaKeyPair::from_pkcs8(bytes) {
                    Ok(k) => Key::Rsa(k),
                    Err(rsa) => Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes)
                        .map(Key::Ed25519)
                        .map_err(|_| DkimError::Key(rsa.to_string()))?,
                }
            }
            _ => return Err(DkimError::Key("not an RSA or Ed25519 key".into())),
        };
        Ok(Self {
            domain: domain.to_string(),
            selector: selector.to_string(),
            key,
            header: Canonicalization::Relaxed,
            body: Canonicalization::Relaxed,
            rng: aws_lc_rs::rand::SystemRandom::new(),
        })
    }

    /// The same signer with other canonicalisations (the `c=` tag).
    #[must_use]
    pub fn with_canonicalization(
        mut self,
        header: Canonicalization,
        body: Canonicalization,
    ) -> Self {
        self.header = header;
        self.body = body;
        self
    }

    /// The `a=` tag: `rsa-sha256` or `ed25519-sha256`.
    pub fn algorithm(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "rsa-sha256",
            Key::Ed25519(_) => "ed25519-sha256",
        }
    }

    /// Checks a configured `dkim_algorithm` (`rsa` or `ed25519`, or the full `a=` names)
    /// against the key: the key decides the algorithm, this only catches a key file that is
    /// not the one the operator meant.
    pub fn require_algorithm(&self, given: &str) -> Result<(), DkimError> {
        let a = self.algorithm();
        let wanted = given.trim().to_ascii_lowercase();
        if wanted == a || Some(wanted.as_str()) == a.strip_suffix("-sha256") {
            Ok(())
        } else {
            Err(DkimError::Algorithm {
                given: given.to_string(),
                key: a,
            })
        }
    }

    /// The `p=` value of the DNS record that verifies this signer's signatures: the public
    /// key, base64 (an RSA `SubjectPublicKeyInfo`'s key as PKCS#1, or Ed25519's 32 bytes).
    pub fn public_key_base64(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        match &self.key {
            Key::Rsa(k) => b64.encode(k.public_key().as_ref()),
            Key::Ed25519(k) => b64.encode(k.public_key().as_ref()),
        }
    }

    /// `message` (formatted: CRLF line ends, header fields, an empty line, the body) with a
    /// `DKIM-Signature` field put first, signed at `timestamp` (seconds since the epoch).
    pub fn sign(&self, message: &[u8], timestamp: u64) -> Result<Vec<u8>, DkimError> {
        let split = find(message, b"\r\n\r\n").ok_or(DkimError::NoBody)?;
        let head = &message[..split + 2];
        let body = &message[split + 4..];
        let b64 = base64::engine::general_purpose::STANDARD;
        let bh = b64.encode(body_hash(body, self.body));

        let fields = header_fields(head);
        let mut data = Vec::with_capacity(1024);
        let mut names = Vec::with_capacity(SIGNED_HEADERS.len());
        for name in SIGNED_HEADERS {
            // A verifier takes the last instance of a name first (RFC 6376 §5.4.2).
            if let Some(field) = fields.iter().rev().find(|f| field_name_is(f, name)) {
                self.canonical_header(field, &mut data);
                names.push(name.to_ascii_lowercase());
            }
        }
        // Folded between tags, lines under 78 characters; `b=` last and empty while signing.
        let unsigned = format!(
            "DKIM-Signature: v=1; a={}; c={}/{}; d={}; s={};\r\n t={timestamp}; h={};\r\n bh={bh};\r\n b=",
            self.algorithm(),
            self.header.name(),
            self.body.name(),
            self.domain,
            self.selector,
            names.join(":"),
        );
        self.canonical_header(unsigned.as_bytes(), &mut data);
        // The signature field itself is signed without its CRLF.
        data.truncate(data.len() - 2);

        let signature = match &self.key {
            Key::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &self.rng, &data, &mut sig)
                    .map_err(|_| DkimError::Sign)?;
                sig
            }
            // RFC 8463 §3: PureEdDSA over the SHA-256 hash of the header data.
            Key::Ed25519(k) => k
                .sign(digest::digest(&digest::SHA256, &data).as_ref())
                .as_ref()
                .to_vec(),
        };
        let b = b64.encode(signature);
        let mut out =
            Vec::with_capacity(unsigned.len() + b.len() + b.len() / 70 * 3 + 2 + message.len());
        out.extend_from_slice(unsigned.as_bytes());
        // The value folded too: a verifier drops `b=`'s value with its white space.
        for (i, chunk) in b.as_bytes().chunks(72).enumerate() {
            if i > 0 {
                out.extend_from_slice(b"\r\n ");
            }
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(message);
        Ok(out)
    }

    /// Appends `field` (one header field with its continuation lines, with or without its
    /// final CRLF) in this signer's header canonicalisation, CRLF included.
    fn canonical_header(&self, field: &[u8], out: &mut Vec<u8>) {
        let field = field.strip_suffix(b"\r\n").unwrap_or(field);
        match self.header {
            Canonicalization::Simple => out.extend_from_slice(field),
            Canonicalization::Relaxed => relaxed_header(field, out),
        }
        out.extend_from_slice(b"\r\n");
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The header fields of `head` (which ends with a CRLF), each with its continuation lines and
/// without its final CRLF.
fn header_fields(head: &[u8]) -> Vec<&[u8]> {
    let mut fields = Vec::with_capacity(16);
    let mut start = 0;
    let mut i = 0;
    while i + 1 < head.len() {
        if head[i] == b'\r' && head[i + 1] == b'\n' {
            let folded = matches!(head.get(i + 2), Some(b' ' | b'\t'));
            if !folded {
                fields.push(&head[start..i]);
                start = i + 2;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    fields
}

fn field_name_is(field: &[u8], name: &str) -> bool {
    field.iter().position(|&b| b == b':').is_some_and(|colon| {
        field[..colon]
            .trim_ascii_end()
            .eq_ignore_ascii_case(name.as_bytes())
    })
}

/// RFC 6376 §3.4.2, without the CRLF: the name in lower case, white space before and after
/// the colon removed, continuation lines unfolded, runs of white space one space, none at the
/// end.
fn relaxed_header(field: &[u8], out: &mut Vec<u8>) {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(field.len());
    out.extend(
        field[..colon]
            .trim_ascii_end()
            .iter()
            .map(u8::to_ascii_lowercase),
    );
    out.push(b':');
    let value = field.get(colon + 1..).unwrap_or_default();
    let mut space = false;
    let mut started = false;
    for &c in value {
        match c {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => space = true,
            _ => {
                if space && started {
                    out.push(b' ');
                }
                space = false;
                started = true;
                out.push(c);
            }
        }
    }
}

/// The SHA-256 of the body in canonical form (RFC 6376 §3.4.3 and §3.4.4), fed line by line
/// with no copy of the whole body.
fn body_hash(body: &[u8], canon: Canonicalization) -> digest::Digest {
    let mut ctx = digest::Context::new(&digest::SHA256);
    // Empty lines seen but not yet written: those ending the body are ignored.
    let mut empty = 0usize;
    let mut wrote = false;
    let mut line = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (text, next) = match find(rest, b"\r\n") {
            Some(i) => (&rest[..i], &rest[i + 2..]),
            // A last line without CRLF gets one (both algorithms).
            None => (rest, &[][..]),
        };
        rest = next;
        let text = match canon {
            Canonicalization::Simple => text,
            Canonicalization::Relaxed => relaxed_line(text, &mut line),
        };
        if text.is_empty() {
            empty += 1;
            continue;
        }
        for _ in 0..empty {
            ctx.update(b"\r\n");
        }
        empty = 0;
        ctx.update(text);
        ctx.update(b"\r\n");
        wrote = true;
    }
    // An empty body is one CRLF in simple, nothing in relaxed.
    if !wrote && canon == Canonicalization::Simple {
        ctx.update(b"\r\n");
    }
    ctx.finish()
}

/// One body line in relaxed form (runs of white space one space, none at the end): the line
/// itself when it is already so (the common case), else a copy in `buf`.
fn relaxed_line<'a>(text: &'a [u8], buf: &'a mut Vec<u8>) -> &'a [u8] {
    let wsp = |b: &u8| *b == b' ' || *b == b'\t';
    let clean = !text.last().is_some_and(wsp)
        && !text.contains(&b'\t')
        && !text.windows(2).any(|w| w == b"  ");
    if clean {
        return text;
    }
    buf.clear();
    let mut space = false;
    for &c in text {
        if wsp(&c) {
            space = true;
        } else {
            if space {
                buf.push(b' ');
            }
            space = false;
            buf.push(c);
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(body: &[u8], c: Canonicalization) -> Vec<u8> {
        body_hash(body, c).as_ref().to_vec()
    }

    fn sha(data: &[u8]) -> Vec<u8> {
        digest::digest(&digest::SHA256, data).as_ref().to_vec()
    }

    #[test]
    fn body_canonicalisation_follows_rfc_6376_examples() {
        use Canonicalization::{Relaxed, Simple};
        // RFC 6376 §3.4.5.
        let body = b" C \r\nD \t E\r\n\r\n\r\n";
        assert_eq!(hash(body, Relaxed), sha(b" C\r\nD E\r\n"));
        assert_eq!(hash(body, Simple), sha(b" C \r\nD \t E\r\n"));
        // Empty bodies (§3.4.3, §3.4.4) and a missing final CRLF.
        assert_eq!(hash(b"", Simple), sha(b"\r\n"));
        assert_eq!(hash(b"\r\n\r\n", Simple), sha(b"\r\n"));
        assert_eq!(hash(b"", Relaxed), sha(b""));
        assert_eq!(hash(b"  \r\n\t\r\n", Relaxed), sha(b""));
        assert_eq!(hash(b"x", Simple), sha(b"x\r\n"));
        assert_eq!(hash(b"x \t", Relaxed), sha(b"x\r\n"));
        // Empty lines inside the body stay.
        assert_eq!(
            hash(b"a\r\n\r\n \r\nb\r\n\r\n", Relaxed),
            sha(b"a\r\n\r\n\r\nb\r\n")
        );
    }

    #[test]
    fn header_canonicalisation_follows_rfc_6376_examples() {
        let mut out = Vec::new();
        relaxed_header(b"SUBJect \t:  AbC \t x\r\n\tfolded  ", &mut out);
        assert_eq!(out, b"subject:AbC x folded");
        out.clear();
        relaxed_header(b"A: X", &mut out);
        assert_eq!(out, b"a:X");
        let fields = header_fields(b"A: X\r\nB : Y\t\r\n\tZ  \r\nC:\r\n");
        assert_eq!(fields, [&b"A: X"[..], b"B : Y\t\r\n\tZ  ", b"C:"]);
        assert!(field_name_is(b"B : Y", "b"));
        assert!(!field_name_is(b"Bc: Y", "b"));
    }

    #[test]
    fn the_configured_algorithm_must_match_the_key() {
        let dir = std::env::temp_dir().join(format!("nurture-dkim-alg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("ed.pem");
        let ok = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&key)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let pem = std::fs::read_to_string(&key).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let signer = DkimSigner::new("x.example", "s", &pem).unwrap();
        assert_eq!(signer.algorithm(), "ed25519-sha256");
        for good in ["ed25519", "ED25519", "ed25519-sha256"] {
            assert!(signer.require_algorithm(good).is_ok(), "{good}");
        }
        for bad in ["rsa", "rsa-sha256", "dsa", ""] {
            let e = signer.require_algorithm(bad).unwrap_err().to_string();
            assert!(e.contains("ed25519-sha256"), "{e}");
        }
    }

    #[test]
    fn an_unusable_key_says_why_without_its_content() {
        for pem in [
            "",
            "not a key",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let e = DkimSigner::new("x.example", "s", pem).unwrap_err();
            assert!(e.to_string().starts_with("the DKIM private key"), "{e}");
        }
    }
}
