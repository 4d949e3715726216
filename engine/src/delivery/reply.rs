//! Replies of remote SMTP servers (sans-IO parsing of reply lines).

use penguin_policy::{ReplyView, parse_enhanced};

use crate::events::EventResponse;

/// One complete reply of a remote server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteReply {
    /// Reply code.
    pub code: u16,
    /// Text of each line (after "NNN-" / "NNN ").
    pub lines: Vec<String>,
}

/// One parsed reply line.
#[derive(Debug, PartialEq, Eq)]
pub struct ReplyLine<'a> {
    /// The code.
    pub code: u16,
    /// False for "NNN-" continuation lines.
    pub last: bool,
    /// The text after the separator.
    pub text: &'a str,
}

/// Parses "250-text" / "250 text" / "250"; `None` if the line is not a reply line.
pub fn parse_reply_line(line: &str) -> Option<ReplyLine<'_>> {
    let code_text = line.get(..3)?;
    if !code_text.bytes().all(|b| b.is_ascii_digit()) || !(b'2'..=b'5').contains(&code_text.as_bytes()[0]) {
        return None;
    }
    let code = code_text.parse().ok()?;
    match line.as_bytes().get(3) {
        None => Some(ReplyLine {
            code,
            last: true,
            text: "",
        }),
        Some(b' ') => Some(ReplyLine {
            code,
            last: true,
            text: &line[4..],
        }),
        Some(b'-') => Some(ReplyLine {
            code,
            last: false,
            text: &line[4..],
        }),
        Some(_) => None,
    }
}

impl RemoteReply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The RFC 3463 enhanced status code at the start of the first line, if any.
    pub fn enhanced(&self) -> Option<(u8, u16, u16)> {
        self.lines.first().and_then(|line| parse_enhanced(line))
    }

    /// All lines joined by a space (for classification, events and DSNs).
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// "550 5.1.1 text" as one line.
    pub fn to_line(&self) -> String {
        format!("{} {}", self.code, self.text())
    }

    /// The event/DSN form: code, enhanced code, text.
    pub fn response(&self) -> EventResponse {
        EventResponse {
            code: self.code,
            enhanced: self
                .enhanced()
                .map(|(class, subject, detail)| format!("{class}.{subject}.{detail}")),
            text: self.text(),
        }
    }

    /// Runs `f` with the classifier's view of this reply.
    pub fn with_view<T>(&self, f: impl FnOnce(&ReplyView<'_>) -> T) -> T {
        let text = self.text();
        f(&ReplyView {
            code: self.code,
            enhanced: self.enhanced(),
            text: &text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_table() {
        type Expected<'a> = Option<(u16, bool, &'a str)>;
        let cases: &[(&str, Expected<'_>)] = &[
            ("250 Ok", Some((250, true, "Ok"))),
            ("250-mx.example", Some((250, false, "mx.example"))),
            ("354", Some((354, true, ""))),
            (
                "550 5.1.1 <a@b>: unknown",
                Some((550, true, "5.1.1 <a@b>: unknown")),
            ),
            ("hello", None),
            ("25", None),
            ("650 x", None),
            ("250x", None),
        ];
        for (line, expected) in cases {
            let parsed = parse_reply_line(line).map(|l| (l.code, l.last, l.text));
            assert_eq!(parsed, *expected, "{line}");
        }
    }

    #[test]
    fn enhanced_and_text() {
        let reply = RemoteReply {
            code: 550,
            lines: vec!["5.1.1 The email account".into(), "does not exist".into()],
        };
        assert_eq!(reply.enhanced(), Some((5, 1, 1)));
        assert_eq!(reply.text(), "5.1.1 The email account does not exist");
        assert_eq!(reply.response().enhanced.as_deref(), Some("5.1.1"));
        let bare = RemoteReply {
            code: 554,
            lines: vec!["no".into()],
        };
        assert_eq!(bare.enhanced(), None);
    }
}
