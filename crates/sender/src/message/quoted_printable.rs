//! Quoted-printable (RFC 2045 §6.7), the transfer encoding of both parts of every message.
//! A module of its own because every byte of every body passes through it: it is written
//! for speed, and its tests check it byte by byte and against the `quoted_printable` crate.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
