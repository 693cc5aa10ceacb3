//! The log: one line per event on stderr, and nothing from outside can
//! break a line. Log lines carry what clients sent (login names, file
//! names, User-Agents, CSV cells); a newline in one would let a client
//! write a whole forged line (`scan-guard ban ip=…`) for fail2ban to act
//! on, and a bidi control or a terminal escape would show an operator
//! something else than what is there. So every event is escaped as it is
//! written, whatever field it came in: control characters, Unicode line
//! and paragraph separators and bidi controls become `\n`, `\u{202e}` and
//! the like. Colours are off: they are control characters too.
//!
//! `AUTOPROV_LOG_FORMAT=json` writes one JSON object per line instead, for
//! log shippers: JSON escapes control characters itself (and a `\u{…}`
//! escape of ours would not be JSON), so it goes out as serde_json writes it.

use std::io::{self, Write};

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_env("AUTOPROV_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,rustls=error"));
    let format = std::env::var("AUTOPROV_LOG_FORMAT").unwrap_or_default();
    let json = match format.trim() {
        "json" => true,
        "" | "text" => false,
        other => {
            eprintln!("autoprov: AUTOPROV_LOG_FORMAT={:?}: must be text or json; logging as text", escape(other));
            false
        }
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false);
    let _ = if json {
        builder.json().with_writer(io::stderr).try_init()
    } else {
        builder.with_writer(|| EscapingWriter(io::stderr())).try_init()
    };
}

/// Writes each event (the formatter hands over one whole event, its own
/// line end last) with everything that could break or disguise a line
/// escaped.
pub struct EscapingWriter<W>(pub W);

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, end) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (&*text, ""),
        };
        let mut line = escape(body);
        line.push_str(end);
        self.0.write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// `s` with every character that is not safe in one log line escaped.
pub fn escape(s: &str) -> String {
    if !s.chars().any(unsafe_in_a_line) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if unsafe_in_a_line(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Control characters, Unicode line and paragraph separators, and the bidi
/// controls (Unicode TR9; the "Trojan Source" characters).
fn unsafe_in_a_line(c: char) -> bool {
    c.is_control() || crate::model::is_line_or_bidi_control(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newline_in_a_field_cannot_forge_a_line() {
        let mut w = EscapingWriter(Vec::new());
        let event = "2026-12-02T00:00:00Z  INFO api login failed user=evil\nscan-guard ban ip=192.0.2.1\n";
        w.write_all(event.as_bytes()).unwrap();
        let out = String::from_utf8(w.0).unwrap();
        assert_eq!(out.lines().count(), 1, "{out:?}");
        assert!(out.ends_with("user=evil\\nscan-guard ban ip=192.0.2.1\n"), "{out:?}");
    }

    #[test]
    fn bidi_controls_separators_and_escapes_are_shown_not_obeyed() {
        assert_eq!(escape("a\u{202e}b\u{2028}c\u{1b}[31md\te"), "a\\u{202e}b\\u{2028}c\\u{1b}[31md\\te");
        assert_eq!(escape("plain ascii, ünïcode"), "plain ascii, ünïcode");
    }
}
