//! A hand-driven SMTP client for this module's tests: the sink's behaviour is proved by
//! speaking SMTP to it line by line, without the sender crate.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::SmtpSink;

/// A hand-driven SMTP client: enough protocol to prove what the sink does.
pub(super) struct Client {
    reader: BufReader<TcpStream>,
    pub(super) writer: TcpStream,
}

impl Client {
    pub(super) fn connect(sink: &SmtpSink) -> (Self, String) {
        let stream = TcpStream::connect(("127.0.0.1", sink.port())).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut client = Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        let greeting = client.reply();
        (client, greeting)
    }

    /// Reads one (possibly multi-line) reply; empty if the server hung up.
    fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
                return reply;
            }
            reply.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return reply;
            }
        }
    }

    pub(super) fn send(&mut self, line: &str) -> String {
        self.writer.write_all(line.as_bytes()).unwrap();
        self.writer.write_all(b"\r\n").unwrap();
        self.reply()
    }
}
