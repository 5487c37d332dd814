//! One message's transaction on an open connection: MAIL FROM, RCPT TO and DATA (grouped in
//! one write when the server pipelines), then the dot-stuffed content in one write. Which
//! reply belongs to which command is tracked here so a refusal names its [`Phase`].

use std::fmt;

use lettre::Address;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{Extension, MailBodyParameter, MailParameter};

use super::timeouts::within;
use super::{Phase, SendError, SmtpConnection, Verdict};
use crate::message::BuiltMessage;

/// What ending a refused pipelined transaction with an empty message waits for.
const EMPTY_END: &str = "the reply to an empty message";

/// Several commands written as one (PIPELINING).
struct Grouped(String);

impl fmt::Display for Grouped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The DATA content in one piece: dot-stuffed (RFC 5321 §4.5.2) and terminated, byte for
/// byte what lettre's `message` sends, but in one write instead of two (two TCP segments
/// with Nagle off, and two reads for the server). `None` for content that is not UTF-8
/// (ours is ASCII), which goes through lettre.
fn data_block(bytes: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(bytes).ok()?;
    let mut out = String::with_capacity(s.len() + 64);
    if s.starts_with('.') {
        out.push('.');
    }
    let mut last = 0;
    for (i, _) in s.match_indices("\r\n.") {
        out.push_str(&s[last..i + 2]);
        out.push('.');
        last = i + 2;
    }
    out.push_str(&s[last..]);
    out.push_str("\r\n.\r\n");
    Some(out)
}

impl SmtpConnection {
    pub(super) async fn transaction(
        &self,
        conn: &mut AsyncSmtpConnection,
        m: &BuiltMessage,
    ) -> Result<String, SendError> {
        let from: Address = m.from.parse().map_err(|_| {
            SendError::local(
                Phase::Mail,
                format!("`{}` is not a valid sender address", m.from),
                Verdict::Transient,
            )
        })?;
        let to: Address = m.to.parse().map_err(|_| {
            SendError::local(
                Phase::Rcpt,
                format!("`{}` is not a valid address", m.to),
                Verdict::Permanent,
            )
        })?;
        // What lettre's own `send` adds: SMTPUTF8 for non-ASCII addresses, 8BITMIME for a
        // non-ASCII message (ours are ASCII: quoted-printable bodies, RFC 2047 headers).
        let info = conn.server_info();
        let mut params = Vec::new();
        if !m.from.is_ascii() || !m.to.is_ascii() {
            if !info.supports_feature(Extension::SmtpUtfEight) {
                let (phase, verdict) = if m.to.is_ascii() {
                    (Phase::Mail, Verdict::Transient)
                } else {
                    (Phase::Rcpt, Verdict::Permanent)
                };
                return Err(SendError::local(
                    phase,
                    "the address is not ASCII and the server does not support SMTPUTF8".into(),
                    verdict,
                ));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        if !m.bytes.is_ascii() && info.supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let mail = Mail::new(Some(from), params);
        let rcpt = Rcpt::new(to, vec![]);
        let limit = self.timeouts.command;
        if self.pipelining {
            // RFC 2920: MAIL, RCPT and DATA in one write, their three replies read in order,
            // so a message costs two round trips instead of four.
            let group = Grouped(format!("{mail}{rcpt}{Data}"));
            let mail = match tokio::time::timeout(limit, conn.command(group)).await {
                Ok(reply) => reply.map_err(|e| SendError::from_lettre(Phase::Mail, &e)),
                // A server answers a pipelined group when it reaches DATA: that is where it
                // hangs (still before any content, so transient).
                Err(_) => {
                    return Err(SendError::timeout(
                        Phase::Data,
                        "the replies to MAIL FROM, RCPT TO and DATA",
                        limit,
                    ));
                }
            };
            if let Err(e) = mail {
                if e.code.is_none() {
                    // A broken connection (a stale one is retried on a new connection).
                    return Err(e);
                }
                let rcpt = within(limit, Phase::Rcpt, "RCPT TO", conn.read_response()).await;
                let data = within(limit, Phase::Data, "DATA", conn.read_response()).await;
                if rcpt.is_err() && data.is_ok() {
                    let _ = within(limit, Phase::Message, EMPTY_END, conn.message(b"")).await;
                }
                return Err(e);
            }
            let rcpt = within(limit, Phase::Rcpt, "RCPT TO", conn.read_response()).await;
            if let Err(e) = &rcpt
                && e.code.is_none()
            {
                return rcpt.map(|_| String::new());
            }
            let data = within(limit, Phase::Data, "DATA", conn.read_response()).await;
            if rcpt.is_err() && data.is_ok() {
                // The server took DATA without a valid envelope: end the empty message so
                // the connection stays in step (it will refuse it).
                let _ = within(limit, Phase::Message, EMPTY_END, conn.message(b"")).await;
            }
            rcpt?;
            data?;
        } else {
            within(limit, Phase::Mail, "MAIL FROM", conn.command(mail)).await?;
            within(limit, Phase::Rcpt, "RCPT TO", conn.command(rcpt)).await?;
            within(limit, Phase::Data, "DATA", conn.command(Data)).await?;
        }
        // A timeout here may come while the content is still being written (the server
        // stopped reading) and the server then cannot have accepted it; but the content of
        // our messages fits in the sockets' buffers, so the write is done at once and the
        // wait is for the final reply: `unknown`, never re-sent.
        let content = self.timeouts.content;
        let what = "the final reply to the content";
        let reply = match data_block(&m.bytes) {
            Some(block) => {
                within(content, Phase::Message, what, conn.command(Grouped(block))).await?
            }
            None => within(content, Phase::Message, what, conn.message(&m.bytes)).await?,
        };
        Ok(format!(
            "{} {}",
            reply.code(),
            reply.message().collect::<Vec<_>>().join(" ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_block_stuffs_dots_like_lettre() {
        let cases: [&[u8]; 6] = [
            b"Subject: x\r\n\r\nbody\r\n",
            b".starts with a dot\r\n..two\r\n.\r\nend",
            b"a\r\n.\r\n.\r\n",
            b"no newline at all",
            b"bare\n.lf is not a line start\r.either",
            b"",
        ];
        for case in cases {
            let mut want = Vec::new();
            let mut at_line_start = true;
            let mut after_cr = false;
            for &b in case {
                want.push(b);
                if b == b'.' && at_line_start {
                    want.push(b'.');
                }
                at_line_start = after_cr && b == b'\n';
                after_cr = b == b'\r';
            }
            want.extend_from_slice(b"\r\n.\r\n");
            let got = data_block(case).unwrap();
            assert_eq!(
                got.as_bytes(),
                want.as_slice(),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
        assert!(data_block(b"\xff").is_none());
    }
}
