//! Pure parts of the test sink's SMTP server: EHLO extensions, command/line checks, reply formatting,
//! MAIL/RCPT path and parameter parsing.

use tokio_rustls::TlsAcceptor;

use super::{HOSTNAME, MAX_MESSAGE, MAX_TEXT_LINE};

/// The extensions one EHLO reply offered; they govern the rest of that session.
#[derive(Clone)]
pub(super) struct Extensions {
    /// PIPELINING offered.
    pub(super) pipelining: bool,
    /// 8BITMIME offered.
    pub(super) eight_bit: bool,
    /// SMTPUTF8 offered.
    pub(super) smtputf8: bool,
    /// STARTTLS offered (with the acceptor to use).
    pub(super) starttls: Option<TlsAcceptor>,
    /// Extra EHLO lines.
    pub(super) extra: Vec<String>,
}

impl Extensions {
    /// The lines of the EHLO reply.
    pub(super) fn ehlo_lines(&self, client: &str) -> Vec<String> {
        let mut lines = vec![format!("{HOSTNAME} greets {client}")];
        let flags = [
            (self.pipelining, "PIPELINING"),
            (self.eight_bit, "8BITMIME"),
            (self.smtputf8, "SMTPUTF8"),
            (true, "ENHANCEDSTATUSCODES"),
            (self.starttls.is_some(), "STARTTLS"),
        ];
        lines.push(format!("SIZE {MAX_MESSAGE}"));
        lines.extend(
            flags
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, name)| name.to_string()),
        );
        lines.extend(self.extra.iter().cloned());
        lines
    }

    /// Whether an extra EHLO line allows parameter `key` (upper case) on MAIL (`mail`) or RCPT.
    pub(super) fn extra_allows(&self, key: &str, mail: bool) -> bool {
        self.extra.iter().any(|line| {
            let keyword = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            match (keyword.as_str(), mail) {
                ("DSN", true) => matches!(key, "RET" | "ENVID"),
                ("DSN", false) => matches!(key, "NOTIFY" | "ORCPT"),
                (_, true) => key == keyword,
                (_, false) => false,
            }
        })
    }
}

/// The faults of one content line (LF included): bare LF, bare CR, over 1000 octets, not dot-stuffed.
pub(super) fn line_faults(line: &[u8]) -> impl Iterator<Item = &'static str> {
    let crlf = line.ends_with(b"\r\n");
    let text = &line[..line.len() - if crlf { 2 } else { 1 }];
    let single_dot = line.first() == Some(&b'.') && line.get(1) != Some(&b'.');
    [
        (!crlf, "content line ending in a bare LF"),
        (text.contains(&b'\r'), "content with a bare CR"),
        (line.len() > MAX_TEXT_LINE, "content line longer than 1000 octets"),
        (
            single_dot,
            "content line starting with a single dot (not dot-stuffed)",
        ),
    ]
    .into_iter()
    .filter_map(|(found, what)| found.then_some(what))
}

/// A command line without its CRLF; an error names the fault (bare LF, bare CR, not UTF-8).
pub(super) fn command_text(line: &[u8]) -> Result<String, &'static str> {
    let Some(text) = line.strip_suffix(b"\r\n") else {
        return Err("line not ending in CRLF");
    };
    if text.contains(&b'\r') {
        return Err("bare CR");
    }
    String::from_utf8(text.to_vec()).map_err(|_| "not UTF-8")
}

/// `code text` as wire lines, `code-` on all but the last; `\n` in `text` separates lines.
pub(super) fn format_reply(code: u16, text: &str) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut wire = String::new();
    for (index, line) in lines.iter().enumerate() {
        let separator = if index + 1 == lines.len() { ' ' } else { '-' };
        wire.push_str(&format!("{code}{separator}{line}\r\n"));
    }
    wire
}

/// Address and raw parameters (empty or starting with a space) of `FROM:<address> params` (MAIL,
/// `rcpt` = `None`) or `TO:<address> params` (RCPT, `rcpt` = whether MAIL declared SMTPUTF8): strict
/// syntax (no space before `<`), parameters checked against the session's extensions, non-ASCII
/// addresses only with SMTPUTF8. An error is the fault reply.
pub(super) fn parse_path<'a>(
    arg: &'a str,
    esmtp: Option<&Extensions>,
    rcpt: Option<bool>,
) -> Result<(&'a str, &'a str), String> {
    let keyword = if rcpt.is_some() { "TO:<" } else { "FROM:<" };
    let syntax = |problem: &str| format!("501 5.5.4 Syntax: {keyword}address> ({problem})");
    let head = arg
        .get(..keyword.len())
        .filter(|head| head.eq_ignore_ascii_case(keyword));
    let Some(path) = head.and_then(|_| arg.get(keyword.len()..)) else {
        return Err(syntax("no '<' right after the colon"));
    };
    let (mut quoted, mut escaped) = (false, false);
    let end = path.char_indices().find_map(|(index, char)| {
        match char {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return Some(index),
            _ => {}
        }
        None
    });
    let Some(end) = end else {
        return Err(syntax("no closing '>'"));
    };
    let (address, params) = (&path[..end], &path[end + 1..]);
    if address.contains([' ', '<']) || (rcpt.is_some() && address.is_empty()) {
        return Err(syntax("bad or empty address"));
    }
    if !params.is_empty() && !params.starts_with(' ') {
        return Err(syntax("no space before the parameters"));
    }
    check_params(params, esmtp, rcpt.is_none())?;
    if !address.is_ascii() && !rcpt.unwrap_or(false) && param(params, "SMTPUTF8").is_none() {
        return Err("553 5.6.7 Non-ASCII address without SMTPUTF8".into());
    }
    Ok((address, params))
}

/// Checks MAIL (`mail`) or RCPT parameters: single spaces, no duplicates, valid SIZE/BODY values, only
/// those of offered extensions. An error is the fault reply.
pub(super) fn check_params(params: &str, esmtp: Option<&Extensions>, mail: bool) -> Result<(), String> {
    let mut seen = Vec::new();
    for param in params.split(' ').skip(1) {
        let (key, value) = param
            .split_once('=')
            .map_or((param, None), |(key, value)| (key, Some(value)));
        let key = key.to_ascii_uppercase();
        let Some(esmtp) = esmtp else {
            return Err("555 5.5.4 No parameters without EHLO".into());
        };
        let valid = match (key.as_str(), value) {
            _ if key.is_empty() || seen.contains(&key) => false,
            ("SIZE", Some(size)) if mail => size.parse::<u64>().is_ok(),
            ("BODY", Some(body)) if mail && esmtp.eight_bit => {
                body.eq_ignore_ascii_case("7BIT") || body.eq_ignore_ascii_case("8BITMIME")
            }
            ("SMTPUTF8", None) if mail && esmtp.smtputf8 => true,
            _ => esmtp.extra_allows(&key, mail),
        };
        if !valid {
            return Err(format!("555 5.5.4 Unsupported or invalid parameter {param:?}"));
        }
        seen.push(key);
    }
    Ok(())
}

/// The value of parameter `key` (any case) among `params`; `Some("")` when it has no value.
pub(super) fn param<'a>(params: &'a str, key: &str) -> Option<&'a str> {
    params.split(' ').find_map(|param| {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        name.eq_ignore_ascii_case(key).then_some(value)
    })
}

/// Whether MAIL parameters allow 8-bit content (BODY=8BITMIME or SMTPUTF8).
pub(super) fn declares_eight_bit(params: &str) -> bool {
    param(params, "SMTPUTF8").is_some()
        || param(params, "BODY").is_some_and(|body| body.eq_ignore_ascii_case("8BITMIME"))
}
