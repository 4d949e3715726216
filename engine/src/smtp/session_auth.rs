//! SMTP AUTH (RFC 4954) within the session: PLAIN and LOGIN exchanges.

use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN};

use super::{AuthExchange, AuthOutcome, Session, Step};
use crate::smtp::auth::{self, Credentials, SaslError};
use crate::smtp::reply::{Reply, replies};

/// "Username:" in base64, the LOGIN prompt.
const LOGIN_USERNAME_PROMPT: &str = "VXNlcm5hbWU6";
/// "Password:" in base64, the LOGIN prompt.
const LOGIN_PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

impl Session {
    /// AUTH mechanism [initial-response].
    pub(super) fn on_auth(&mut self, mechanism: u64, initial_response: &str) -> Step {
        if self.authenticated.is_some() {
            return self.error(replies::bad_sequence("Error: already authenticated"));
        }
        if self.transaction.is_some() {
            return self.error(replies::bad_sequence("Error: MAIL transaction in progress"));
        }
        if self.helo.is_none() {
            return self.error(replies::bad_sequence("Error: send EHLO first"));
        }
        if !self.auth_allowed() {
            return self.error(replies::encryption_required());
        }
        let initial = (!initial_response.is_empty()).then_some(initial_response);
        match (mechanism, initial) {
            (AUTH_PLAIN, None) => self.challenge(AuthExchange::Plain, ""),
            (AUTH_PLAIN, Some(response)) => self.on_auth_response(AuthExchange::Plain, response.as_bytes()),
            (AUTH_LOGIN, None) => self.challenge(AuthExchange::LoginUsername, LOGIN_USERNAME_PROMPT),
            (AUTH_LOGIN, Some(response)) => {
                self.on_auth_response(AuthExchange::LoginUsername, response.as_bytes())
            }
            _ => self.error(Reply::new(
                504,
                "5.5.4",
                "Error: unsupported authentication mechanism",
            )),
        }
    }

    /// Sends a 334 challenge and waits for the response line.
    fn challenge(&mut self, exchange: AuthExchange, prompt: &'static str) -> Step {
        self.auth_exchange = Some(exchange);
        Step::Reply(Reply::bare(334, vec![prompt.into()]))
    }

    /// A response line of an AUTH exchange.
    pub(super) fn on_auth_response(&mut self, exchange: AuthExchange, line: &[u8]) -> Step {
        let text = String::from_utf8_lossy(line);
        let decoded = auth::decode_response(text.trim_end_matches(['\r', '\n']));
        let parsed = decoded.and_then(|message| match exchange {
            AuthExchange::Plain => auth::parse_plain(&message).map(Some),
            AuthExchange::LoginUsername => auth::parse_login_username(&message).map(|username| {
                self.auth_exchange = Some(AuthExchange::LoginPassword(username));
                None
            }),
            AuthExchange::LoginPassword(username) => Ok(Some(Credentials {
                username,
                password: message,
            })),
        });
        match parsed {
            Ok(Some(credentials)) => Step::Verify(credentials),
            Ok(None) => Step::Reply(Reply::bare(334, vec![LOGIN_PASSWORD_PROMPT.into()])),
            Err(SaslError::Cancelled) => {
                self.auth_exchange = None;
                self.error(Reply::new(501, "5.7.0", "Error: authentication aborted"))
            }
            Err(SaslError::Malformed) => {
                self.auth_exchange = None;
                self.error(Reply::new(
                    501,
                    "5.5.2",
                    "Error: cannot decode authentication response",
                ))
            }
        }
    }

    /// The driver's verdict on credentials.
    pub fn on_verified(&mut self, outcome: AuthOutcome) -> Step {
        match outcome {
            AuthOutcome::Success(tenant) => {
                self.authenticated = Some(tenant);
                Step::Reply(replies::authenticated())
            }
            AuthOutcome::Failure => self.error(replies::bad_credentials()),
            AuthOutcome::LockedOut => Step::Close(replies::auth_locked_out(&self.shared.params.hostname)),
        }
    }
}
