//! One mail transaction: MAIL, RCPT per recipient, DATA, the dot-stuffed content, the final reply.

use memchr::memchr_iter;
use penguin_policy::NetworkFailure;

use super::{Connection, SessionError, Timeouts, Transaction};
use crate::delivery::reply::RemoteReply;

/// The remote answer for each recipient of a transaction, in recipient order.
pub type RecipientReplies = Vec<RemoteReply>;

impl Connection {
    /// Sends one message. `Ok` holds each recipient's deciding reply (its RCPT refusal, or the reply
    /// to the end of data); `Err` means no per-recipient answer exists (MAIL refused, connection or
    /// protocol failure) and applies to all recipients. The connection stays usable only after a
    /// completed transaction.
    ///
    /// `ahead` is the transaction the caller will send next on this connection, if it has one now:
    /// with PIPELINING its MAIL, RCPT and DATA go out in the same write as this message's content
    /// and final dot, saving a round of writes and wake-ups on both sides. The next call must then
    /// be for exactly that transaction (anything else makes the connection unusable).
    pub async fn send(
        &mut self,
        tx: &Transaction<'_>,
        ahead: Option<&Transaction<'_>>,
        timeouts: Timeouts,
    ) -> Result<RecipientReplies, SessionError> {
        if !self.usable {
            return Err(SessionError::network(
                NetworkFailure::Disconnected,
                format!("the connection to {} cannot be reused", self.host),
            ));
        }
        let needs_utf8 = self.acceptable(tx)?;
        let commands = self.envelope_commands(tx, needs_utf8);
        let result = match self.announced.take() {
            Some(announced) if announced == commands => self.envelope_replies(tx, timeouts).await,
            Some(_) => {
                self.usable = false;
                return Err(SessionError::network(
                    NetworkFailure::Disconnected,
                    "the transaction differs from the one pipelined ahead",
                ));
            }
            None if self.capabilities.pipelining => {
                self.write(commands.as_bytes(), timeouts.command).await?;
                self.envelope_replies(tx, timeouts).await
            }
            None => self.envelope_stepwise(&commands, tx, timeouts).await,
        };
        let (rcpt_replies, data_reply) = match result {
            Ok(replies) => replies,
            Err(error) => {
                self.abandon(timeouts).await;
                return Err(error);
            }
        };
        let accepted = rcpt_replies.iter().filter(|reply| reply.is_positive()).count();
        let final_reply = self
            .finish_data(tx, ahead, data_reply, accepted, timeouts)
            .await?;
        self.transactions += 1;
        Ok(rcpt_replies
            .into_iter()
            .map(|rcpt| {
                if rcpt.is_positive() {
                    final_reply.clone()
                } else {
                    rcpt
                }
            })
            .collect())
    }

    /// Whether this server can take `tx` (SMTPUTF8 when needed, its SIZE limit): Ok(needs SMTPUTF8),
    /// or the error that fails the transaction without sending it.
    fn acceptable(&self, tx: &Transaction<'_>) -> Result<bool, SessionError> {
        let needs_utf8 = tx.smtputf8 || !tx.sender.is_ascii() || tx.recipients.iter().any(|r| !r.is_ascii());
        if needs_utf8 && !self.capabilities.smtputf8 {
            return Err(SessionError::network(
                NetworkFailure::SmtpUtf8NotOffered,
                format!("{} does not offer SMTPUTF8, which this message needs", self.host),
            ));
        }
        if let Some(limit) = self
            .capabilities
            .size
            .filter(|&limit| limit > 0 && tx.body.len() as u64 > limit)
        {
            let text = format!(
                "5.3.4 message size {} exceeds the limit {limit} announced by {}",
                tx.body.len(),
                self.host
            );
            return Err(SessionError::Reply(RemoteReply {
                code: 552,
                lines: vec![text],
            }));
        }
        Ok(needs_utf8)
    }

    /// `MAIL FROM:<..>` with SIZE, BODY and SMTPUTF8 parameters as the server allows, then with
    /// PIPELINING a `RCPT TO` per recipient and `DATA` (without, only MAIL: the rest goes stepwise).
    fn envelope_commands(&self, tx: &Transaction<'_>, needs_utf8: bool) -> String {
        let mut command = String::with_capacity(64 + tx.recipients.len() * 48);
        command.push_str("MAIL FROM:<");
        command.push_str(tx.sender);
        command.push('>');
        if self.capabilities.size.is_some() {
            command.push_str(&format!(" SIZE={}", tx.body.len()));
        }
        if tx.eight_bit && self.capabilities.eight_bit_mime {
            command.push_str(" BODY=8BITMIME");
        }
        if needs_utf8 {
            command.push_str(" SMTPUTF8");
        }
        command.push_str("\r\n");
        if self.capabilities.pipelining {
            for recipient in tx.recipients {
                command.push_str("RCPT TO:<");
                command.push_str(recipient);
                command.push_str(">\r\n");
            }
            command.push_str("DATA\r\n");
        }
        command
    }

    /// The replies to a pipelined MAIL, RCPTs and DATA (RFC 2920), in order.
    async fn envelope_replies(
        &mut self,
        tx: &Transaction<'_>,
        timeouts: Timeouts,
    ) -> Result<(RecipientReplies, RemoteReply), SessionError> {
        let mail_reply = self.read_reply(timeouts.command).await?;
        let mut rcpt_replies = Vec::with_capacity(tx.recipients.len());
        for _ in tx.recipients {
            rcpt_replies.push(self.read_reply(timeouts.command).await?);
        }
        let data_reply = self.read_reply(timeouts.data_init).await?;
        if !mail_reply.is_positive() {
            if data_reply.code == 354 {
                // The server started DATA although MAIL failed: end the empty message.
                self.write(b".\r\n", timeouts.data_block).await?;
                let _ = self.read_reply(timeouts.data_done).await?;
            }
            return Err(SessionError::Reply(mail_reply));
        }
        Ok((rcpt_replies, data_reply))
    }

    /// MAIL, each RCPT and DATA one at a time (no PIPELINING).
    async fn envelope_stepwise(
        &mut self,
        mail: &str,
        tx: &Transaction<'_>,
        timeouts: Timeouts,
    ) -> Result<(RecipientReplies, RemoteReply), SessionError> {
        self.write(mail.as_bytes(), timeouts.command).await?;
        let mail_reply = self.read_reply(timeouts.command).await?;
        if !mail_reply.is_positive() {
            return Err(SessionError::Reply(mail_reply));
        }
        let mut rcpt_replies = Vec::with_capacity(tx.recipients.len());
        for recipient in tx.recipients {
            self.write(format!("RCPT TO:<{recipient}>\r\n").as_bytes(), timeouts.command)
                .await?;
            rcpt_replies.push(self.read_reply(timeouts.command).await?);
        }
        if !rcpt_replies.iter().any(RemoteReply::is_positive) {
            // Nobody accepted: no DATA (RFC 5321 3.3). A placeholder reply stands for "not sent".
            return Ok((
                rcpt_replies,
                RemoteReply {
                    code: 554,
                    lines: vec!["5.5.1 no valid recipients".into()],
                },
            ));
        }
        self.write(b"DATA\r\n", timeouts.command).await?;
        let data_reply = self.read_reply(timeouts.data_init).await?;
        Ok((rcpt_replies, data_reply))
    }

    /// Sends the content after a 354 and reads the final reply; handles DATA refusals.
    async fn finish_data(
        &mut self,
        tx: &Transaction<'_>,
        ahead: Option<&Transaction<'_>>,
        data_reply: RemoteReply,
        accepted: usize,
        timeouts: Timeouts,
    ) -> Result<RemoteReply, SessionError> {
        if data_reply.code != 354 {
            if accepted == 0 {
                // Every RCPT was refused; DATA's refusal is expected. The session stays usable.
                self.reset(timeouts).await;
                return Ok(data_reply);
            }
            self.reset(timeouts).await;
            return Err(SessionError::Reply(data_reply));
        }
        if accepted == 0 {
            self.write(b".\r\n", timeouts.data_block).await?;
            self.read_reply(timeouts.data_done).await?;
            return Ok(RemoteReply {
                code: 554,
                lines: vec!["5.5.1 no valid recipients".into()],
            });
        }
        let mut content = dot_stuff(tx.body);
        let announced = ahead.filter(|_| self.capabilities.pipelining).and_then(|next| {
            let needs_utf8 = self.acceptable(next).ok()?;
            Some(self.envelope_commands(next, needs_utf8))
        });
        if let Some(commands) = &announced {
            content.extend_from_slice(commands.as_bytes());
        }
        self.write(&content, timeouts.data_block).await?;
        self.announced = announced;
        match self.read_reply(timeouts.data_done).await {
            Ok(reply) => Ok(reply),
            Err(SessionError::Network { detail, .. }) => Err(SessionError::network(
                NetworkFailure::DisconnectedAfterData,
                format!("no reply after the end of data: {detail}"),
            )),
            Err(other) => Err(other),
        }
    }

    /// RSET after a failed transaction, keeping the connection if the server agrees.
    async fn reset(&mut self, timeouts: Timeouts) {
        let ok = self.write(b"RSET\r\n", timeouts.command).await.is_ok()
            && self
                .read_reply(timeouts.command)
                .await
                .is_ok_and(|reply| reply.is_positive());
        if !ok {
            self.usable = false;
        }
    }

    /// After an error inside a transaction: try RSET so the connection can be reused.
    async fn abandon(&mut self, timeouts: Timeouts) {
        if self.usable {
            self.reset(timeouts).await;
        }
    }
}

/// The wire form of message content: a dot doubled at the start of every line, CRLF at the end,
/// then the terminating ".\r\n" (RFC 5321 4.5.2).
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64 + 8);
    let mut start = 0;
    if body.first() == Some(&b'.') {
        out.push(b'.');
    }
    for newline in memchr_iter(b'\n', body) {
        if body.get(newline + 1) == Some(&b'.') {
            out.extend_from_slice(&body[start..=newline]);
            out.push(b'.');
            start = newline + 1;
        }
    }
    out.extend_from_slice(&body[start..]);
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
            (b".a\r\n", b"..a\r\n.\r\n"),
            (b"a\r\n.\r\nb", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\r\n..b\r\n", b"a\r\n...b\r\n.\r\n"),
            (b"", b"\r\n.\r\n"),
            (b"no newline", b"no newline\r\n.\r\n"),
        ];
        for (body, wire) in cases {
            assert_eq!(dot_stuff(body), *wire, "{:?}", String::from_utf8_lossy(body));
        }
    }
}
