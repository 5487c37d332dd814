//! Building the message: `multipart/alternative` (text, then HTML), both parts
//! quoted-printable, with every header of SPEC §5. Contact data never reaches a header raw.

mod quoted_printable;

use std::time::SystemTime;

use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::{Address, Message};

use self::quoted_printable::quoted_printable;
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

    #[test]
    fn message_ids_are_unique() {
        let a = build_message(&email(None), None).unwrap();
        let b = build_message(&email(None), None).unwrap();
        assert_ne!(a.message_id, b.message_id);
        assert!(a.message_id.ends_with("@leadcraft.example>"));
    }
}
