//! SMTP replies: code, RFC 3463 enhanced status code and text, serialised per RFC 5321 §4.2.

use std::borrow::Cow;
use std::fmt;

/// One SMTP reply, possibly multi-line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The enhanced status code ("2.0.0"), absent on the greeting and EHLO/HELO (RFC 2034 §3).
    pub status: Option<&'static str>,
    /// Text lines; all but the last are sent with `code-`.
    pub lines: Vec<Cow<'static, str>>,
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    pub fn new(code: u16, status: &'static str, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            status: Some(status),
            lines: vec![text.into()],
        }
    }

    /// A reply without an enhanced status code (greeting, EHLO, HELO, AUTH challenges).
    pub fn bare(code: u16, lines: Vec<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            status: None,
            lines,
        }
    }

    /// 4xx or 5xx.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Appends the wire form to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (index, line) in self.lines.iter().enumerate() {
            let separator = if index == last { ' ' } else { '-' };
            let code = self.code;
            match self.status {
                Some(status) => {
                    out.extend_from_slice(format!("{code}{separator}{status} {line}\r\n").as_bytes())
                }
                None => out.extend_from_slice(format!("{code}{separator}{line}\r\n").as_bytes()),
            }
        }
        if self.lines.is_empty() {
            out.extend_from_slice(format!("{}\r\n", self.code).as_bytes());
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut wire = Vec::new();
        self.write_to(&mut wire);
        f.write_str(String::from_utf8_lossy(&wire).trim_end())
    }
}

/// The fixed replies, in one place so their texts stay consistent (tools match on codes, people read texts).
pub mod replies {
    use super::Reply;

    /// 250 2.0.0 Ok
    pub fn ok() -> Reply {
        Reply::new(250, "2.0.0", "Ok")
    }
    /// 503 5.5.1 bad sequence of commands, with a reason.
    pub fn bad_sequence(reason: &'static str) -> Reply {
        Reply::new(503, "5.5.1", reason)
    }
    /// 500 5.5.2 unknown command.
    pub fn unknown_command() -> Reply {
        Reply::new(500, "5.5.2", "Error: command not recognized")
    }
    /// 502 5.5.1 a command we deliberately do not implement.
    pub fn not_implemented() -> Reply {
        Reply::new(502, "5.5.1", "Error: command not implemented")
    }
    /// 500 5.5.2 command line over 512 octets.
    pub fn line_too_long() -> Reply {
        Reply::new(500, "5.5.2", "Error: line too long (512 octets maximum)")
    }
    /// 500 5.5.2 bare CR or LF in a command (the connection is then closed).
    pub fn bare_line_ending_in_command() -> Reply {
        Reply::new(500, "5.5.2", "Error: bare <CR> or <LF> received")
    }
    /// 550 5.6.0 bare CR or LF in message content (SMTP smuggling defence).
    pub fn bare_line_ending_in_message() -> Reply {
        Reply::new(
            550,
            "5.6.0",
            "Message rejected: bare <CR> or <LF> in message content",
        )
    }
    /// 550 5.6.0 text line over 1000 octets.
    pub fn message_line_too_long() -> Reply {
        Reply::new(550, "5.6.0", "Message rejected: line longer than 1000 octets")
    }
    /// 552 5.3.4 message too big.
    pub fn message_too_big() -> Reply {
        Reply::new(552, "5.3.4", "Error: message size exceeds fixed limit")
    }
    /// 452 4.5.3 too many recipients.
    pub fn too_many_recipients() -> Reply {
        Reply::new(452, "4.5.3", "Error: too many recipients")
    }
    /// 452 4.3.1 the spool's disk is (nearly) full.
    pub fn insufficient_storage() -> Reply {
        Reply::new(452, "4.3.1", "Insufficient system storage")
    }
    /// 451 4.3.0 a spool write failed for another reason.
    pub fn spool_write_failed() -> Reply {
        Reply::new(451, "4.3.0", "Error: queue file write error, try again later")
    }
    /// 530 5.7.0 a client that neither authenticated nor is in relay_networks.
    pub fn authentication_required() -> Reply {
        Reply::new(530, "5.7.0", "Authentication required")
    }
    /// 550 5.7.1 an `X-Pool` naming a pool the tenant may not use (or no pool at all).
    pub fn pool_refused(pool: &str, tenant: &str) -> Reply {
        let pool: String = pool
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(64)
            .collect();
        Reply::new(
            550,
            "5.7.1",
            format!("Message rejected: X-Pool {pool:?} is not a pool tenant {tenant} may use"),
        )
    }
    /// 452 4.7.1 the tenant's daily quota is used up (until midnight UTC).
    pub fn daily_quota_reached(tenant: &str, quota: u64) -> Reply {
        Reply::new(
            452,
            "4.7.1",
            format!(
                "Daily quota of {quota} recipients reached for tenant {tenant}; try again after 00:00 UTC"
            ),
        )
    }
    /// 550 5.7.1 mail for a cancelled campaign.
    pub fn campaign_cancelled(campaign: &str) -> Reply {
        Reply::new(
            550,
            "5.7.1",
            format!("Message rejected: campaign {campaign:?} is cancelled"),
        )
    }
    /// 535 5.7.8 wrong credentials.
    pub fn bad_credentials() -> Reply {
        Reply::new(535, "5.7.8", "Error: authentication credentials invalid")
    }
    /// 538 5.7.11 AUTH before STARTTLS from a remote client.
    pub fn encryption_required() -> Reply {
        Reply::new(
            538,
            "5.7.11",
            "Encryption required for requested authentication mechanism",
        )
    }
    /// 235 2.7.0 AUTH succeeded.
    pub fn authenticated() -> Reply {
        Reply::new(235, "2.7.0", "Authentication successful")
    }
    /// 421 4.7.0 too many failed AUTH attempts from this client.
    pub fn auth_locked_out(hostname: &str) -> Reply {
        Reply::new(
            421,
            "4.7.0",
            format!("{hostname} Error: too many failed authentication attempts, try later"),
        )
    }
    /// 421 4.7.0 connection limit reached.
    pub fn too_many_connections(hostname: &str) -> Reply {
        Reply::new(
            421,
            "4.7.0",
            format!("{hostname} Error: too many connections, try later"),
        )
    }
    /// 421 4.7.0 too many errors in this session.
    pub fn too_many_errors(hostname: &str) -> Reply {
        Reply::new(421, "4.7.0", format!("{hostname} Error: too many errors"))
    }
    /// 421 4.4.2 idle or DATA timeout.
    pub fn timeout(hostname: &str) -> Reply {
        Reply::new(421, "4.4.2", format!("{hostname} Error: timeout exceeded"))
    }
    /// 421 4.3.2 the server is shutting down.
    pub fn shutting_down(hostname: &str) -> Reply {
        Reply::new(
            421,
            "4.3.2",
            format!("{hostname} Service shutting down, closing transmission channel"),
        )
    }
    /// 554 5.5.0 commands sent before the server's answer where pipelining is not allowed.
    pub fn protocol_synchronization() -> Reply {
        Reply::new(554, "5.5.0", "Error: SMTP protocol synchronization")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms() {
        let mut out = Vec::new();
        replies::ok().write_to(&mut out);
        Reply::bare(
            250,
            vec!["mta.example".into(), "PIPELINING".into(), "SIZE 100".into()],
        )
        .write_to(&mut out);
        Reply::bare(334, vec!["".into()]).write_to(&mut out);
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "250 2.0.0 Ok\r\n250-mta.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n334 \r\n"
        );
    }
}
