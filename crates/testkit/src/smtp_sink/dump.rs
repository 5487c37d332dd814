//! The format of one smtp-sink dump file and [`ReceivedMessage`], which takes it apart into
//! the envelope smtp-sink wrote and the message the client sent. Pure byte handling: no
//! process, no folder.

/// One mail transaction as smtp-sink dumped it.
///
/// What smtp-sink writes into a dump file (checked against Postfix 3.7, see `man smtp-sink`):
///
/// ```text
/// X-Client-Addr: 127.0.0.1
/// X-Client-Proto: ESMTP
/// X-Helo-Args: client.example
/// X-Mail-Args: <from@example.com> BODY=8BITMIME
/// X-Rcpt-Args: <to@example.com>
/// Received: from client.example ([127.0.0.1])
/// <TAB>by smtp-sink (smtp-sink) with ESMTP id 058ea95e;
/// <TAB>Sun, 22 Nov 2026 11:44:07 +0000 (UTC)
/// Subject: hi
/// From: from@example.com
///
/// body
/// <empty line>
/// ```
///
/// - the envelope comes first, written by smtp-sink: `X-Helo-Args` only if the client sent
///   EHLO/HELO, `X-Mail-Args` exactly once, one `X-Rcpt-Args` per RCPT in order,
///   then a three-line `Received:` header whose last two lines start with a tab;
/// - then the message as the client sent it, after dot-unstuffing and with CRLF turned into
///   LF (a lone CR is dropped);
/// - then one empty line that smtp-sink appends.
///
/// [`ReceivedMessage::raw`] is that whole file; [`ReceivedMessage::message`] is the message
/// part alone (from its first header to the end of its body, without the appended empty
/// line), and the envelope is parsed by [`ReceivedMessage::mail_from`] and
/// [`ReceivedMessage::rcpt_to`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The dump file's name, e.g. `20261122114407.058ea95e`.
    pub file_name: String,
    /// The whole dump file: smtp-sink's envelope lines, the message, one empty line.
    pub raw: Vec<u8>,
}

impl ReceivedMessage {
    /// The message as the client sent it, headers first, without smtp-sink's envelope lines
    /// and the empty line it appends. Lines end in LF (smtp-sink turns CRLF into LF).
    pub fn message(&self) -> &[u8] {
        let (_, message) = split_envelope(&self.raw);
        message.strip_suffix(b"\n").unwrap_or(message)
    }

    /// [`ReceivedMessage::message`] as text (invalid UTF-8 replaced).
    pub fn message_text(&self) -> String {
        String::from_utf8_lossy(self.message()).into_owned()
    }

    /// The message's body: what follows the first empty line of [`ReceivedMessage::message`]
    /// (still transfer-encoded, e.g. quoted-printable or base64, if the client encoded it).
    pub fn body(&self) -> &[u8] {
        let message = self.message();
        match find(message, b"\n\n") {
            Some(i) => &message[i + 2..],
            None => &[],
        }
    }

    /// The value of the message's first header called `name` (case-insensitive), unfolded,
    /// undecoded (an encoded word like `=?utf-8?b?…?=` stays as it is).
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.message_text();
        let head = text.split("\n\n").next().unwrap_or_default();
        let mut value: Option<String> = None;
        for line in head.lines() {
            if let Some(found) = &mut value {
                if line.starts_with([' ', '\t']) {
                    found.push(' ');
                    found.push_str(line.trim());
                    continue;
                }
                break;
            }
            if let Some((key, rest)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                value = Some(rest.trim().to_owned());
            }
        }
        value
    }

    /// The envelope sender from `MAIL FROM:<…>` (without the angle brackets; empty for the
    /// null sender `<>`). `None` only if the file has no `X-Mail-Args` line.
    pub fn mail_from(&self) -> Option<String> {
        self.envelope_values("X-Mail-Args:")
            .first()
            .map(|args| address(args))
    }

    /// The envelope recipients from each accepted `RCPT TO:<…>`, in order, without the
    /// angle brackets.
    pub fn rcpt_to(&self) -> Vec<String> {
        self.envelope_values("X-Rcpt-Args:")
            .iter()
            .map(|args| address(args))
            .collect()
    }

    /// Values of the envelope lines starting with `prefix`.
    fn envelope_values(&self, prefix: &str) -> Vec<String> {
        let (envelope, _) = split_envelope(&self.raw);
        String::from_utf8_lossy(envelope)
            .lines()
            .filter_map(|line| line.strip_prefix(prefix))
            .map(|value| value.trim().to_owned())
            .collect()
    }
}

/// Splits a dump file into smtp-sink's envelope (the `X-Client-Addr` … `X-Rcpt-Args` lines
/// and its three-line `Received:` header) and the rest (the message plus the appended empty
/// line). A file that does not start like an smtp-sink dump is returned whole as the rest.
pub fn split_envelope(raw: &[u8]) -> (&[u8], &[u8]) {
    const ENVELOPE_LINES: [&[u8]; 5] = [
        b"X-Client-Addr:",
        b"X-Client-Proto:",
        b"X-Helo-Args:",
        b"X-Mail-Args:",
        b"X-Rcpt-Args:",
    ];
    /// The line starting at `pos` (with its newline) and where the next one starts.
    fn line(raw: &[u8], pos: usize) -> (usize, &[u8]) {
        let end = raw[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| pos + i + 1);
        (end, &raw[pos..end])
    }
    let mut pos = 0;
    loop {
        let (next, text) = line(raw, pos);
        if ENVELOPE_LINES.iter().any(|prefix| text.starts_with(prefix)) {
            pos = next;
            continue;
        }
        if pos == 0 || !text.starts_with(b"Received: ") {
            return (&[], raw);
        }
        pos = next;
        break;
    }
    // The Received header smtp-sink writes has exactly two continuation lines.
    for _ in 0..2 {
        let (next, text) = line(raw, pos);
        if !text.starts_with(b"\t") {
            break;
        }
        pos = next;
    }
    raw.split_at(pos)
}

/// The address inside `<…>` at the start of MAIL/RCPT arguments (`<a@b> BODY=8BITMIME`).
fn address(args: &str) -> String {
    let args = args.trim();
    match args.strip_prefix('<').and_then(|rest| rest.split_once('>')) {
        Some((address, _)) => address.to_owned(),
        None => args
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_envelope_handles_files_without_envelope() {
        let raw = b"Subject: x\n\nbody\n\n";
        assert_eq!(split_envelope(raw), (&b""[..], &raw[..]));
        let message = ReceivedMessage {
            file_name: "f".into(),
            raw: raw.to_vec(),
        };
        assert_eq!(message.message(), b"Subject: x\n\nbody\n");
        assert!(message.rcpt_to().is_empty());
    }

    #[test]
    fn header_unfolds_continuation_lines() {
        let message = ReceivedMessage {
            file_name: "f".into(),
            raw: b"Subject: a\n very long\n\tsubject\nTo: b\n\nSubject: not a header\n\n".to_vec(),
        };
        assert_eq!(
            message.header("SUBJECT").as_deref(),
            Some("a very long subject")
        );
        assert_eq!(message.header("to").as_deref(), Some("b"));
        assert_eq!(message.header("cc"), None);
    }
}
