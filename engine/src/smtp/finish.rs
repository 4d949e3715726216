//! The last steps of reception before the spool write: one-click unsubscribe headers (one copy per
//! recipient, each with its own token) and DKIM signatures (d= the From header's domain). Pure CPU
//! work: the connection runs it on a blocking thread.

use std::sync::Arc;

use arc_swap::ArcSwap;
use penguin_config::{DkimConfig, MissingKeyAction};
use penguin_dkim::{KeyStore, Signer};
use penguin_queue::{MessageId, NewMessage};

use super::auth::Tenant;
use super::headers;
use super::reply::Reply;
use crate::unsubscribe::{self, UnsubscribeClaims, UnsubscribeTokens};

/// Where unsubscribe links point.
#[derive(Clone, Debug)]
pub struct UnsubscribeLinks {
    /// `BASE_URL` of `BASE_URL/u/TOKEN`, without a trailing slash.
    pub base_url: String,
    /// The optional mailto: address.
    pub mailto: Option<String>,
}

/// Signs and adds unsubscribe headers; its DKIM settings are swapped on reload.
pub struct Finisher {
    /// Where the keys are (to check that one exists before going to a blocking thread).
    store: Arc<KeyStore>,
    /// The key store's signer (keys cached, new key files picked up per message).
    signer: Signer,
    /// `[dkim]`: which selectors sign which domain, what to do without a key.
    dkim: ArcSwap<DkimConfig>,
    /// Token source for unsubscribe links.
    tokens: Arc<UnsubscribeTokens>,
    /// Link targets.
    links: UnsubscribeLinks,
}

/// What `prepare` leaves to do.
#[derive(Debug)]
pub enum Prepared {
    /// Nothing to sign: store these.
    Ready(Finished),
    /// Sign on a blocking thread ([`Finisher::sign`]).
    Sign(SignJob),
}

/// Messages to sign for one domain.
#[derive(Debug)]
pub struct SignJob {
    /// The copies to sign.
    messages: Vec<NewMessage>,
    /// `d=`.
    domain: String,
    /// Selectors that sign.
    selectors: Vec<String>,
    /// Refuse the message if no key signs after all.
    refuse_unsigned: bool,
    /// For the refusal text.
    tenant: String,
}

/// The messages to store for one accepted message.
#[derive(Debug)]
pub struct Finished {
    /// One message, or one per recipient when unsubscribe links were added.
    pub messages: Vec<NewMessage>,
    /// Why the message stays unsigned (`no_key`, `foreign_domain`, `no_from_domain`); `None` if signed.
    pub unsigned: Option<&'static str>,
    /// The From domain, when there was one.
    pub from_domain: Option<String>,
}

/// What signing decided for a message.
enum SigningPlan {
    /// Sign for this domain with these selectors.
    Sign(String, Vec<String>),
    /// Do not sign, for this reason.
    Unsigned(&'static str, Option<String>),
}

impl Finisher {
    /// A finisher signing with the keys of `store` as `dkim` says, with unsubscribe links from
    /// `tokens` / `links`.
    pub fn new(
        store: Arc<KeyStore>,
        dkim: DkimConfig,
        tokens: Arc<UnsubscribeTokens>,
        links: UnsubscribeLinks,
    ) -> Finisher {
        Finisher {
            signer: Signer::new(Arc::clone(&store)),
            store,
            dkim: ArcSwap::from_pointee(dkim),
            tokens,
            links,
        }
    }

    /// Applies a reloaded `[dkim]` section (selector choice, missing-key action) from the next message on.
    pub fn reload(&self, dkim: DkimConfig) {
        self.dkim.store(Arc::new(dkim));
    }

    /// The cheap part, fine on the async runtime: decides how to sign, adds unsubscribe headers
    /// (splitting per recipient) and checks that a key file exists. `Prepared::Sign` must then go to
    /// [`Finisher::sign`] on a blocking thread. `Err` is the reply refusing the message (550 5.7.1 when
    /// it cannot be signed and the tenant wants such mail refused).
    pub fn prepare(
        &self,
        message: NewMessage,
        tenant: &Tenant,
        mut next_id: impl FnMut() -> MessageId,
    ) -> Result<Prepared, Reply> {
        let dkim = self.dkim.load();
        let refuse_unsigned = tenant.dkim_missing_key.unwrap_or(dkim.missing_key) == MissingKeyAction::Reject;
        let plan = signing_plan(&dkim, tenant, &message.body);
        let plan = match plan {
            SigningPlan::Sign(domain, selectors) if !self.has_key(&domain, &selectors) => {
                SigningPlan::Unsigned("no_key", Some(domain))
            }
            plan => plan,
        };
        if let SigningPlan::Unsigned(reason, domain) = &plan
            && refuse_unsigned
        {
            return Err(unsigned_refusal(reason, domain.as_deref(), &tenant.name));
        }
        let messages = self.with_unsubscribe(message, tenant, &mut next_id);
        Ok(match plan {
            SigningPlan::Unsigned(reason, from_domain) => Prepared::Ready(Finished {
                messages,
                unsigned: Some(reason),
                from_domain,
            }),
            SigningPlan::Sign(domain, selectors) => Prepared::Sign(SignJob {
                messages,
                domain,
                selectors,
                refuse_unsigned,
                tenant: tenant.name.clone(),
            }),
        })
    }

    /// Signs the prepared messages (CPU-heavy: call it on a blocking thread). A key removed since
    /// `prepare` makes the message unsigned (or refused, as the tenant wants); 451 4.3.0 when a key
    /// cannot be used.
    pub fn sign(&self, job: SignJob) -> Result<Finished, Reply> {
        let SignJob {
            mut messages,
            domain,
            selectors,
            refuse_unsigned,
            tenant,
        } = job;
        let signed = self.sign_all(&mut messages, &domain, &selectors)?;
        if !signed && refuse_unsigned {
            return Err(unsigned_refusal("no_key", Some(&domain), &tenant));
        }
        Ok(Finished {
            messages,
            unsigned: (!signed).then_some("no_key"),
            from_domain: Some(domain),
        })
    }

    /// Signs a message this server writes itself (a DSN, From `MAILER-DAEMON@smtp.hostname`) with
    /// d= its From domain when that domain has a key; otherwise (or if signing fails, which is logged)
    /// returns it unchanged: such a message is never refused. Call it on a blocking thread.
    pub fn sign_own(&self, mut message: NewMessage) -> NewMessage {
        let Some(domain) = from_domain(&message.body) else {
            return message;
        };
        let selectors = self.dkim.load().selectors_for(&domain).to_vec();
        if self.has_key(&domain, &selectors) {
            let _ = self.sign_one(&mut message, &domain, &selectors);
        }
        message
    }

    /// Whether a key file exists for one of the selectors (a `stat` each).
    fn has_key(&self, domain: &str, selectors: &[String]) -> bool {
        selectors.iter().any(|selector| {
            self.store
                .key_path(domain, selector)
                .is_ok_and(|path| path.is_file())
        })
    }

    /// Signs every copy; false (nothing signed) when no selector of the domain has a key.
    fn sign_all(
        &self,
        messages: &mut [NewMessage],
        domain: &str,
        selectors: &[String],
    ) -> Result<bool, Reply> {
        for message in messages.iter_mut() {
            if !self.sign_one(message, domain, selectors)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Prepends the DKIM-Signature field(s); false when no selector had a key.
    fn sign_one(&self, message: &mut NewMessage, domain: &str, selectors: &[String]) -> Result<bool, Reply> {
        let signed = self
            .signer
            .sign(&message.body, domain, selectors)
            .map_err(|error| {
                tracing::error!(%error, domain, "DKIM signing failed");
                Reply::new(451, "4.3.0", "Error: DKIM signing failed, try again later")
            })?;
        if signed.selectors.is_empty() {
            return Ok(false);
        }
        let mut body = signed.header;
        body.extend_from_slice(&message.body);
        message.envelope.size = body.len() as u64;
        message.body = body;
        Ok(true)
    }

    /// One copy per recipient with its own List-Unsubscribe link, when the tenant wants links and the
    /// message has none; otherwise the message as it is.
    fn with_unsubscribe(
        &self,
        message: NewMessage,
        tenant: &Tenant,
        next_id: &mut impl FnMut() -> MessageId,
    ) -> Vec<NewMessage> {
        let has_header = headers::header_fields(&message.body)
            .any(|(name, _)| name.trim_ascii().eq_ignore_ascii_case(b"List-Unsubscribe"));
        if !tenant.list_unsubscribe || has_header {
            return vec![message];
        }
        let NewMessage { id, envelope, body } = message;
        let mut copies = Vec::with_capacity(envelope.recipients.len());
        for (index, recipient) in envelope.recipients.iter().enumerate() {
            let token = self.tokens.token(&UnsubscribeClaims {
                tenant: tenant.name.clone(),
                campaign: envelope.campaign.clone(),
                recipient: recipient.address.clone(),
            });
            let mut copy_body =
                unsubscribe::header_fields(&self.links.base_url, self.links.mailto.as_deref(), &token);
            copy_body.extend_from_slice(&body);
            let mut copy_envelope = envelope.clone();
            copy_envelope.recipients = vec![recipient.clone()];
            copy_envelope.size = copy_body.len() as u64;
            copies.push(NewMessage {
                id: if index == 0 { id } else { next_id() },
                envelope: copy_envelope,
                body: copy_body,
            });
        }
        copies
    }
}

/// Whether and how to sign: d= is the From domain, when it is one of the tenant's sender domains.
fn signing_plan(dkim: &DkimConfig, tenant: &Tenant, body: &[u8]) -> SigningPlan {
    let Some(domain) = from_domain(body) else {
        return SigningPlan::Unsigned("no_from_domain", None);
    };
    if !tenant.may_send_from(&domain) {
        return SigningPlan::Unsigned("foreign_domain", Some(domain));
    }
    let selectors = dkim.selectors_for(&domain).to_vec();
    SigningPlan::Sign(domain, selectors)
}

/// The domain of the first address in the From header, lowercased. Only that field is parsed (it
/// runs for every message).
pub fn from_domain(body: &[u8]) -> Option<String> {
    let (name, value) =
        headers::header_fields(body).find(|(name, _)| name.trim_ascii().eq_ignore_ascii_case(b"From"))?;
    let mut field = Vec::with_capacity(name.len() + value.len() + 3);
    field.extend_from_slice(b"From:");
    field.extend_from_slice(value);
    field.extend_from_slice(b"\r\n");
    let parsed = mail_parser::MessageParser::new().parse_headers(&field)?;
    let address = parsed.from()?.first()?.address()?;
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

/// 550 5.7.1 for a message the tenant wants refused rather than sent unsigned.
fn unsigned_refusal(reason: &str, domain: Option<&str>, tenant: &str) -> Reply {
    let text = match (reason, domain) {
        ("foreign_domain", Some(domain)) => format!(
            "Message rejected: From domain {domain} is not a sender domain of tenant {tenant}, so it cannot be DKIM-signed"
        ),
        ("no_key", Some(domain)) => {
            format!("Message rejected: no DKIM key for From domain {domain} (penguin-mta dkim keygen)")
        }
        _ => "Message rejected: no From header domain to DKIM-sign for".to_owned(),
    };
    Reply::new(550, "5.7.1", text)
}

#[cfg(test)]
mod tests {
    use super::from_domain;

    #[test]
    fn the_from_domain_of_real_world_from_fields() {
        let cases: [(&str, Option<&str>); 9] = [
            ("From: alice@Example.COM\r\n\r\nbody", Some("example.com")),
            (
                "Subject: x\r\nfrom: Alice <alice@example.com>\r\n\r\n",
                Some("example.com"),
            ),
            (
                "From: \"Doe, John\" <john@doe.example>\r\n\r\n",
                Some("doe.example"),
            ),
            (
                "From: \"a@b.example\" <real@real.example>\r\n\r\n",
                Some("real.example"),
            ),
            (
                "From: Alice\r\n <alice@folded.example>\r\nTo: x@y\r\n\r\n",
                Some("folded.example"),
            ),
            (
                "From: first@one.example, second@two.example\r\n\r\n",
                Some("one.example"),
            ),
            (
                "From: =?UTF-8?Q?J=C3=BCrgen?= <j@umlaut.example>\r\n\r\n",
                Some("umlaut.example"),
            ),
            ("To: bob@example.com\r\n\r\nFrom: not@a-header.example\r\n", None),
            ("From: undisclosed\r\n\r\n", None),
        ];
        for (message, expected) in cases {
            assert_eq!(
                from_domain(message.as_bytes()).as_deref(),
                expected,
                "{message:?}"
            );
        }
    }
}
