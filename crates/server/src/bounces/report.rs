//! Reports that reach a mailbox: RFC 3464 delivery status notifications (what Postfix,
//! Exchange or Gmail send back to the envelope sender when they give up on a message) and
//! RFC 5965 ARF abuse reports (what mailbox providers' feedback loops send when a recipient
//! marks a message as spam). `nurture bounces ingest` feeds them here, so a Postfix `pipe`
//! transport or a mailbox fetcher can hand nurture its bounce mailbox.
//!
//! A DSN is a `multipart/report` with a `message/delivery-status` part: one group of
//! per-message fields, then one group per recipient (`Final-Recipient`, `Action`, `Status`,
//! `Diagnostic-Code`). `Action: failed` with a 5.x.x status is a hard bounce, with a 4.x.x
//! status (the relay gave up retrying) a soft one; `delayed` is only a warning and
//! `delivered` a delivery. An ARF report has a `message/feedback-report` part; its
//! `Feedback-Type` `abuse`, `fraud` or `other` is a complaint (`not-spam`, `virus` and
//! `auth-failure` reports are not). Either way the original message, attached whole
//! (`message/rfc822`) or by its headers (`text/rfc822-headers`), gives its Message-ID.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use nurture_store::SignalKind;

use super::Signal;

/// Which kind of report a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An RFC 3464 delivery status notification.
    Dsn,
    /// An RFC 5965 abuse feedback report.
    Arf,
}

impl Format {
    /// The name signals from it are recorded under (`dsn`, `arf`).
    pub fn source(self) -> &'static str {
        match self {
            Self::Dsn => "dsn",
            Self::Arf => "arf",
        }
    }
}

/// A recognised report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// DSN or ARF.
    pub format: Format,
    /// One signal per recipient the report is about (bounces, complaints, deliveries).
    pub signals: Vec<Signal>,
    /// What was in the report but is not a signal (a delay warning, a not-spam report).
    pub notes: Vec<String>,
}

/// Why a message is not a report nurture reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAReport(pub String);

impl std::fmt::Display for NotAReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads one message: a DSN, an ARF report, or [`NotAReport`] saying what it is instead.
pub fn parse(raw: &[u8]) -> Result<Report, NotAReport> {
    let Some(message) = MessageParser::default().parse(raw) else {
        return Err(NotAReport("not an email message".into()));
    };
    let mut status = None;
    let mut feedback = None;
    let mut original_id = None;
    let mut original_to = None;
    for part in &message.parts {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let (ctype, subtype) = (
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or_default().to_ascii_lowercase(),
        );
        match (ctype.as_str(), subtype.as_str()) {
            ("message", "delivery-status" | "global-delivery-status") => {
                status.get_or_insert_with(|| String::from_utf8_lossy(part.contents()).into_owned());
            }
            ("message", "feedback-report") => {
                feedback
                    .get_or_insert_with(|| String::from_utf8_lossy(part.contents()).into_owned());
            }
            ("message", "rfc822" | "global") | ("text", "rfc822-headers") => {
                if original_id.is_some() {
                    continue;
                }
                let headers;
                let original: Option<&Message> = match &part.body {
                    PartType::Message(m) => Some(m),
                    _ => {
                        headers = MessageParser::default().parse_headers(part.contents());
                        headers.as_ref()
                    }
                };
                if let Some(o) = original {
                    original_id = o.message_id().map(str::to_string);
                    original_to = o
                        .to()
                        .and_then(|a| a.first())
                        .and_then(|a| a.address())
                        .map(str::to_string);
                }
            }
            _ => {}
        }
    }
    // The report's own Message-ID keys its signals, so feeding it twice counts it once.
    let report_id = message.message_id().map(str::to_string);
    if let Some(text) = status {
        Ok(dsn(&text, original_id, report_id))
    } else if let Some(text) = feedback {
        Ok(arf(&text, original_id, original_to, report_id))
    } else {
        let subject = message.subject().unwrap_or("(no subject)");
        Err(NotAReport(format!(
            "not a delivery status notification or an abuse report (subject: {subject})"
        )))
    }
}

/// The field groups of a `message/delivery-status` or `message/feedback-report` body:
/// `Name: value` lines, continuation lines folded in, groups split by blank lines. Names
/// are lower-cased.
fn groups(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if out.last().is_some_and(|g| !g.is_empty()) {
                out.push(Vec::new());
            }
            continue;
        }
        let group = out.last_mut();
        let Some(group) = group else { continue };
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = group.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            group.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    out.retain(|g| !g.is_empty());
    out
}

fn field<'a>(group: &'a [(String, String)], name: &str) -> Option<&'a str> {
    group
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// `rfc822; someone@example.com` → `someone@example.com` (other address types: `None`).
fn address(value: &str) -> Option<String> {
    let (kind, addr) = value.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("rfc822") {
        return None;
    }
    let addr = addr
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!addr.is_empty()).then(|| addr.to_string())
}

fn dsn(text: &str, original_id: Option<String>, report_id: Option<String>) -> Report {
    let mut signals = Vec::new();
    let mut notes = Vec::new();
    // The first group is about the message; the others, each about one recipient, are
    // the ones with a Final-Recipient.
    for group in groups(text)
        .iter()
        .filter(|g| field(g, "final-recipient").is_some())
    {
        let recipient = field(group, "original-recipient")
            .and_then(address)
            .or_else(|| field(group, "final-recipient").and_then(address));
        let action = field(group, "action")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let status = field(group, "status").unwrap_or_default();
        let diagnostic = field(group, "diagnostic-code");
        let who = recipient.clone().unwrap_or_else(|| "a recipient".into());
        let kind = match action.as_str() {
            "failed" if status.starts_with('4') => SignalKind::Soft,
            "failed" if status.starts_with('5') => SignalKind::Hard,
            // No status: the reply code of the diagnostic decides, and without one it failed.
            "failed" => match diagnostic.and_then(|d| d.split(';').nth(1)).map(str::trim) {
                Some(d) if d.starts_with('4') => SignalKind::Soft,
                _ => SignalKind::Hard,
            },
            "delivered" => SignalKind::Delivered,
            "delayed" => {
                notes.push(format!(
                    "{who}: delivery delayed ({status}), not a bounce yet"
                ));
                continue;
            }
            other => {
                notes.push(format!("{who}: action `{other}` is not a bounce"));
                continue;
            }
        };
        let reason = match diagnostic {
            Some(d) => format!("{status} {d}"),
            None => status.to_string(),
        };
        let external_id = report_id
            .as_ref()
            .map(|r| format!("{r}:{}", recipient.as_deref().unwrap_or("")));
        signals.push(Signal {
            email: recipient,
            message_id: original_id.clone(),
            kind,
            reason: Some(reason.trim().to_string()).filter(|r| !r.is_empty()),
            external_id,
        });
    }
    if signals.is_empty() && notes.is_empty() {
        notes.push("the delivery status names no recipient".into());
    }
    Report {
        format: Format::Dsn,
        signals,
        notes,
    }
}

fn arf(
    text: &str,
    original_id: Option<String>,
    original_to: Option<String>,
    report_id: Option<String>,
) -> Report {
    let fields: Vec<(String, String)> = groups(text).into_iter().flatten().collect();
    let feedback = field(&fields, "feedback-type")
        .unwrap_or("abuse")
        .to_ascii_lowercase();
    let mut notes = Vec::new();
    let mut signals = Vec::new();
    // Providers often redact the recipient; the original's To header or its Message-ID
    // still say whom it was about.
    let recipient = field(&fields, "original-rcpt-to")
        .map(|a| a.trim_start_matches('<').trim_end_matches('>').to_string())
        .or(original_to);
    match feedback.as_str() {
        "abuse" | "fraud" | "other" => {
            let from = field(&fields, "user-agent")
                .or_else(|| field(&fields, "reported-domain"))
                .map(|ua| format!(" by {ua}"))
                .unwrap_or_default();
            signals.push(Signal {
                email: recipient,
                message_id: original_id,
                kind: SignalKind::Complaint,
                reason: Some(format!("{feedback} report{from}")),
                external_id: report_id,
            });
        }
        other => notes.push(format!("a `{other}` feedback report is not a complaint")),
    }
    Report {
        format: Format::Arf,
        signals,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_groups_fold_continuations_and_split_on_blank_lines() {
        let g = groups(
            "Reporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; a@b.example\r\nDiagnostic-Code: smtp; 550 no\r\n    such user\r\n\r\n\r\n",
        );
        assert_eq!(g.len(), 2);
        assert_eq!(
            field(&g[1], "diagnostic-code"),
            Some("smtp; 550 no such user")
        );
        assert_eq!(
            address("rfc822; <A@b.example>").as_deref(),
            Some("A@b.example")
        );
        assert_eq!(address("x400; whatever"), None);
    }
}
