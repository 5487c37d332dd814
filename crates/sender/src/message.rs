//! Building the message: `multipart/alternative` (text, then HTML), both parts
//! quoted-printable, with every header of SPEC §5. Contact data never reaches a header raw.

use std::time::SystemTime;

use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::{Address, Message};

use crate::dkim::{DkimError, DkimSigner};

/// One email to build.
#[derive(Debug, Clone)]
pub struct OutgoingEmail<'a> {
    /// From display name.
    pub from_name: Option<&'a str>,
    /// From address.
    pub from_address: &'a str,
    /// Reply-To (name, address).
    pub reply_to: Option<(Option<&'a str>, &'a str)>,
    /// Recipient's display name (contact data: sanitised here).
    pub to_name: Option<&'a str>,
    /// Recipient's address.
    pub to_address: &'a str,
    /// Subject.
    pub subject: &'a str,
    /// HTML part.
    pub html: &'a str,
    /// Text part.
    pub text: &'a str,
    /// The unsubscribe URL for `List-Unsubscribe`.
    pub unsubscribe_url: &'a str,
    /// `X-Nurture-Campaign`.
    pub campaign: &'a str,
    /// `X-Nurture-Step`.
    pub step: &'a str,
    /// `Date`.
    pub date: SystemTime,
}

/// A built message, ready for a transport.
#[derive(Debug, Clone)]
pub struct BuiltMessage {
    /// Envelope sender.
    pub from: String,
    /// Envelope recipient.
    pub to: String,
    /// The `Message-ID`, with angle brackets.
    pub message_id: String,
    /// The RFC 5322 bytes.
    pub bytes: Vec<u8>,
}

/// Why a message could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// An address is not valid.
    #[error("`{0}` is not a valid address")]
    Address(String),
    /// lettre refused the message.
    #[error("cannot build the message: {0}")]
    Build(String),
    /// DKIM signing failed.
    #[error(transparent)]
    Dkim(#[from] DkimError),
}

/// Makes contact data safe for a header: control characters (CR, LF, tab, …) become spaces,
/// runs of spaces collapse. lettre panics on a display name with CR/LF; this runs first.
pub fn sanitize_header_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn mailbox(name: Option<&str>, address: &str) -> Result<Mailbox, MessageError> {
    let email: Address = address
        .trim()
        .parse()
        .map_err(|_| MessageError::Address(sanitize_header_text(address)))?;
    let name = name.map(sanitize_header_text).filter(|n| !n.is_empty());
    Ok(Mailbox::new(name, email))
}

fn message_id(domain: &str) -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: fall back to the time, which is still unique per process.
        let nanos = SystemTime::UNIX_EPOCH
            .elapsed()
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes.copy_from_slice(&nanos.to_le_bytes());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("<{hex}@{domain}>")
}

fn raw(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(
        HeaderName::new_from_ascii_str(name),
        sanitize_header_text(&value),
    )
}

/// Encodes text as quoted-printable (RFC 2045 §6.7): line breaks (LF or CRLF) become CRLF,
/// `=`, control and non-ASCII bytes become `=XX`, as do a space or tab ending a line, and
/// lines are broken softly (`=` CRLF) so none is longer than 76 characters.
///
/// lettre would do the same through the `quoted_printable` crate, after inserting a CR
/// before each LF one at a time (moving the rest of the body for every line); this is one
/// pass that copies runs of plain bytes, so encoding stays a small part of a message's
/// rendering cost.
pub fn quoted_printable(text: &str) -> Vec<u8> {
    /// Characters on a line before a soft break's `=`.
    const MAX: usize = 75;
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    /// Bytes written as they are (a space or tab only inside a line, see below).
    const PLAIN: [bool; 256] = {
        let mut t = [false; 256];
        let mut b = 33;
        while b <= 126 {
            t[b] = b != b'=' as usize;
            b += 1;
        }
        t[b' ' as usize] = true;
        t[b'\t' as usize] = true;
        t
    };
    let mut out = Vec::with_capacity(text.len() + text.len() / 8 + 8);
    // `split` on a char finds line ends with memchr.
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            out.extend_from_slice(b"\r\n");
        }
        let line = line.as_bytes();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let len = line.len();
        let (mut col, mut i) = (0, 0);
        while i < len {
            // The longest run of plain bytes that fits on this line...
            let end = (i + MAX - col).min(len);
            let mut j = i;
            // Eight bytes at a time while all are printable ASCII or space, none `=`.
            while j + 8 <= end {
                let mut word = [0u8; 8];
                word.copy_from_slice(&line[j..j + 8]);
                if !all_plain(u64::from_le_bytes(word)) {
                    break;
                }
                j += 8;
            }
            while j < end && PLAIN[usize::from(line[j])] {
                j += 1;
            }
            // ...except a space or tab ending the line, which must be encoded.
            if j == len && j > i && matches!(line[j - 1], b' ' | b'\t') {
                j -= 1;
            }
            out.extend_from_slice(&line[i..j]);
            col += j - i;
            i = j;
            if i == len {
                break;
            }
            if col == MAX {
                out.extend_from_slice(b"=\r\n");
                col = 0;
                continue;
            }
            if col + 3 > MAX {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            let b = line[i];
            out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            col += 3;
            i += 1;
        }
    }
    out
}

/// True when each of the eight bytes is in `0x20..=0x7E` and none is `=` (what
/// quoted-printable copies as it is inside a line).
fn all_plain(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte below 0x20 borrows into its high bit when 0x20 is taken away; one of 0x7F
    // and up has the high bit set once 1 is added (or already). A carry or borrow only
    // starts at a byte that fails by itself.
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let above_tilde = (w | w.wrapping_add(ONES)) & HIGH;
    let eq = w ^ (ONES * u64::from(b'='));
    let has_eq = eq.wrapping_sub(ONES) & !eq & HIGH;
    below_space == 0 && above_tilde == 0 && has_eq == 0
}

/// Builds the message (and signs it when `dkim` is given).
pub fn build_message(
    email: &OutgoingEmail<'_>,
    dkim: Option<&DkimSigner>,
) -> Result<BuiltMessage, MessageError> {
    let from = mailbox(email.from_name, email.from_address)?;
    let to = mailbox(email.to_name, email.to_address)?;
    let domain = from.email.domain().to_string();
    let id = message_id(&domain);
    // The envelope given, lettre does not parse it back out of the formatted headers.
    let envelope = lettre::address::Envelope::new(Some(from.email.clone()), vec![to.email.clone()])
        .map_err(|e| MessageError::Build(e.to_string()))?;
    let mut builder = Message::builder()
        .envelope(envelope)
        .from(from.clone())
        .to(to.clone())
        .subject(sanitize_header_text(email.subject))
        .date(email.date)
        .message_id(Some(id.clone()))
        .raw_header(raw(
            "List-Unsubscribe",
            format!("<{}>", email.unsubscribe_url),
        ))
        .raw_header(raw(
            "List-Unsubscribe-Post",
            "List-Unsubscribe=One-Click".into(),
        ))
        .raw_header(raw("X-Nurture-Campaign", email.campaign.to_string()))
        .raw_header(raw("X-Nurture-Step", email.step.to_string()));
    if let Some((name, address)) = email.reply_to {
        builder = builder.reply_to(mailbox(name, address)?);
    }
    let qp = |text: &str| {
        Body::dangerous_pre_encoded(
            quoted_printable(text),
            ContentTransferEncoding::QuotedPrintable,
        )
    };
    let body = MultiPart::alternative()
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(qp(email.text)),
        )
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(qp(email.html)),
        );
    let message = builder
        .multipart(body)
        .map_err(|e| MessageError::Build(e.to_string()))?;
    let mut bytes = message.formatted();
    if let Some(signer) = dkim {
        // `t=` is the message's own `Date`, so a signature is as reproducible as the message.
        let t = email
            .date
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        bytes = signer.sign(&bytes, t)?;
    }
    // lettre grows the buffer by doubling; a message may wait in memory a while (rendered
    // ahead of delivery), so give back the slack (in place).
    bytes.shrink_to_fit();
    Ok(BuiltMessage {
        from: from.email.to_string(),
        to: to.email.to_string(),
        message_id: id,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email<'a>(to_name: Option<&'a str>) -> OutgoingEmail<'a> {
        OutgoingEmail {
            from_name: Some("Ana from Leadcraft"),
            from_address: "ana@leadcraft.example",
            reply_to: Some((None, "hello@leadcraft.example")),
            to_name,
            to_address: "lead@x.example",
            subject: "Hello\r\nBcc: victim@x.example",
            html: "<p>Hi</p>",
            text: "Hi",
            unsubscribe_url: "https://n.example/u/TOKEN",
            campaign: "ebook",
            step: "welcome",
            date: SystemTime::UNIX_EPOCH,
        }
    }

    fn headers(bytes: &[u8]) -> String {
        let s = String::from_utf8_lossy(bytes).to_string();
        s.split("\r\n\r\n").next().unwrap_or_default().to_string()
    }

    #[test]
    fn has_every_header_and_encoded_parts() {
        let m = build_message(&email(Some("Lee")), None).unwrap();
        let text = String::from_utf8(m.bytes.clone()).unwrap();
        let h = headers(&m.bytes);
        for needle in [
            "From: \"Ana from Leadcraft\" <ana@leadcraft.example>",
            "To: Lee <lead@x.example>",
            "Reply-To: hello@leadcraft.example",
            "List-Unsubscribe: <https://n.example/u/TOKEN>",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            "X-Nurture-Campaign: ebook",
            "X-Nurture-Step: welcome",
            "Date: ",
            "Content-Type: multipart/alternative",
        ] {
            assert!(h.contains(needle), "missing {needle} in\n{h}");
        }
        assert_eq!(h.matches("Message-ID: <").count(), 1, "{h}");
        assert_eq!(
            text.matches("Content-Transfer-Encoding: quoted-printable")
                .count(),
            2,
            "{text}"
        );
        assert_eq!(m.to, "lead@x.example");
    }

    #[test]
    fn header_injection_through_contact_data_is_neutralised() {
        let m = build_message(&email(Some("Eve\r\nBcc: victim@x.example")), None).unwrap();
        let h = headers(&m.bytes);
        assert!(!h.lines().any(|l| l.starts_with("Bcc:")), "{h}");
        let to = h.lines().find(|l| l.starts_with("To: ")).unwrap();
        assert!(to.ends_with("<lead@x.example>"), "{to}");
        assert!(h.contains("Subject: Hello Bcc: victim@x.example"), "{h}");
    }

    /// The names of the top-level headers, in order.
    fn header_names(bytes: &[u8]) -> Vec<String> {
        headers(bytes)
            .split("\r\n")
            .filter(|l| !l.starts_with([' ', '\t']))
            .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_string()))
            .collect()
    }

    #[test]
    fn odd_display_names_and_header_values_never_panic_nor_add_headers() {
        let expected = [
            "From",
            "Reply-To",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
            "X-Nurture-Campaign",
            "X-Nurture-Step",
            "MIME-Version",
            "Content-Type",
        ];
        let long = "Lee ".repeat(60);
        for name in [
            "Eve\r\nBcc: victim@x.example",
            "Eve\nBcc: victim@x.example",
            "Eve\rBcc: victim@x.example",
            "\"Quoted\" \\ back, slash <evil@x.example>",
            "Zoë Łukasz\u{2028}Bcc: victim@x.example",
            "tab\there\u{85}nel\u{0}nul",
            "\r\n",
            long.as_str(),
        ] {
            let mut e = email(Some(name));
            e.campaign = "ebook\r\nBcc: victim@x.example";
            e.unsubscribe_url = "https://n.example/u/T>\r\nBcc: victim@x.example";
            let m = build_message(&e, None).unwrap();
            let mut names = header_names(&m.bytes);
            names.sort();
            let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
            want.sort();
            assert_eq!(names, want, "{name:?}\n{}", headers(&m.bytes));
            assert_eq!(m.to, "lead@x.example");
            let h = headers(&m.bytes).replace("\r\n ", " ");
            let to = h.lines().find(|l| l.starts_with("To: ")).unwrap();
            assert!(
                to.ends_with("<lead@x.example>") || to == "To: lead@x.example",
                "{to}"
            );
            assert!(
                m.bytes.is_ascii(),
                "headers are encoded, bodies quoted-printable"
            );
        }
    }

    /// Decodes quoted-printable (RFC 2045 §6.7), strictly: fails on anything malformed.
    fn decode_qp(encoded: &[u8]) -> Result<String, String> {
        let text = std::str::from_utf8(encoded).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let lines: Vec<&str> = text.split("\r\n").collect();
        for (n, line) in lines.iter().enumerate() {
            if line.len() > 76 {
                return Err(format!("line {n} has {} characters", line.len()));
            }
            if line.contains(['\r', '\n']) {
                return Err(format!("bare CR or LF on line {n}"));
            }
            if line.ends_with([' ', '\t']) {
                return Err(format!("line {n} ends with white space"));
            }
            let (body, soft) = match line.strip_suffix('=') {
                Some(b) => (b, true),
                None => (*line, false),
            };
            let b = body.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'=' {
                    let hex = body.get(i + 1..i + 3).ok_or("truncated escape")?;
                    if hex.bytes().any(|c| c.is_ascii_lowercase()) {
                        return Err(format!("lowercase escape {hex}"));
                    }
                    out.push(u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?);
                    i += 3;
                } else if b[i].is_ascii_graphic() || b[i] == b' ' || b[i] == b'\t' {
                    out.push(b[i]);
                    i += 1;
                } else {
                    return Err(format!("raw byte {:#x} on line {n}", b[i]));
                }
            }
            if !soft && n + 1 < lines.len() {
                out.extend_from_slice(b"\r\n");
            }
        }
        String::from_utf8(out).map_err(|e| e.to_string())
    }

    #[test]
    fn eight_bytes_at_a_time_agree_with_one_at_a_time() {
        for b in 0..=255u8 {
            for at in 0..8 {
                let mut word = *b"abcdefgh";
                word[at] = b;
                let plain = (0x20..=0x7E).contains(&b) && b != b'=';
                assert_eq!(all_plain(u64::from_le_bytes(word)), plain, "{b:#x} at {at}");
            }
        }
        assert!(all_plain(u64::from_le_bytes(*b"        ")));
        assert!(!all_plain(u64::from_le_bytes(
            *b"\xff\xff\xff\xff\xff\xff\xff\xff"
        )));
    }

    #[test]
    fn quoted_printable_round_trips_and_keeps_lines_short() {
        let long = "word ".repeat(40);
        let equals = "a=b".repeat(60);
        let tail = format!("{}é", "x".repeat(74));
        let cases = [
            "",
            "plain",
            "line one\nline two\r\nline three\n",
            "trailing space \ntrailing tab\t\n \n\t",
            "Zoë Łukasz — “quotes” 🙂",
            "control\u{1}chars\rlone CR and NUL \u{0}",
            "=3D is not decoded = twice",
            ".leading dot\n..two\n.",
            long.as_str(),
            equals.as_str(),
            tail.as_str(),
            "<p style=\"color: #222\">Hi {{first_name}}</p>",
        ];
        for case in cases {
            let encoded = quoted_printable(case);
            // What the encoding must decode to: every line break a CRLF, the rest as is.
            let want = case.replace("\r\n", "\n").replace('\n', "\r\n");
            assert_eq!(
                decode_qp(&encoded).as_deref(),
                Ok(want.as_str()),
                "{case:?} -> {:?}",
                String::from_utf8_lossy(&encoded)
            );
        }
        // Every width around the line limit, with escapes landing on the boundary.
        for n in 60..90 {
            for filler in ["x", "=", "é", " "] {
                let case = format!("{}{}\n", "y".repeat(n), filler.repeat(3));
                let want = case.replace('\n', "\r\n");
                assert_eq!(
                    decode_qp(&quoted_printable(&case)).as_deref(),
                    Ok(want.as_str()),
                    "{case:?}"
                );
            }
        }
    }

    #[test]
    fn quoted_printable_decodes_like_the_quoted_printable_crate_for_every_example_template() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
        let mut seen = 0;
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let ours = quoted_printable(&text);
                let theirs =
                    ::quoted_printable::encode(text.replace("\r\n", "\n").replace('\n', "\r\n"));
                assert_eq!(
                    decode_qp(&ours).unwrap(),
                    decode_qp(&theirs).unwrap(),
                    "{}",
                    path.display()
                );
                seen += 1;
            }
        }
        assert!(seen >= 5, "found {seen} templates");
    }

    #[test]
    fn message_ids_are_unique() {
        let a = build_message(&email(None), None).unwrap();
        let b = build_message(&email(None), None).unwrap();
        assert_ne!(a.message_id, b.message_id);
        assert!(a.message_id.ends_with("@leadcraft.example>"));
    }
}
