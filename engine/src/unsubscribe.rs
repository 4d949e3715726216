//! One-click unsubscribe (RFC 8058): signed tokens naming tenant, campaign and recipient, and the
//! `List-Unsubscribe` / `List-Unsubscribe-Post` header fields that carry them.
//!
//! A token is `base64url(payload || tag)` without padding: the payload is a version byte and the three
//! claims, each as a LEB128 length and UTF-8 bytes; the tag is the first [`TAG_BYTES`] bytes of
//! HMAC-SHA256 over the payload with the spool's `unsubscribe` secret. Tokens are deterministic (the same
//! claims always give the same token) and need no server-side state: the HTTP endpoint (`/u/TOKEN`,
//! [`crate::api`]) verifies the tag and suppresses the recipient.

use aws_lc_rs::{constant_time, hmac};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Bytes of the HMAC-SHA256 tag kept in a token (128 bits).
pub const TAG_BYTES: usize = 16;
/// Version byte of the token payload.
const TOKEN_VERSION: u8 = 1;
/// Longest token [`UnsubscribeTokens::verify`] looks at; anything longer is refused unread.
const MAX_TOKEN_CHARS: usize = 4096;

/// Name of the spool secret that keys the tokens (`Spool::secret`): this node's own key.
pub const SECRET_NAME: &str = "unsubscribe";
/// Name of the spool secret caching the fleet's key (`[cluster]`: adopted from Redis, see
/// [`crate::cluster`]), so a restart without Redis signs with the fleet's key again.
pub const FLEET_SECRET_NAME: &str = "unsubscribe-fleet";

/// The server's tokens: keyed by the spool's `unsubscribe` secret (created and synced on first use, so
/// links stay valid across restarts), or by the fleet's key when one was adopted before. Runs the
/// spool calls on a blocking thread.
pub async fn load(
    spool: &std::sync::Arc<penguin_queue::Spool>,
) -> Result<UnsubscribeTokens, penguin_queue::SpoolError> {
    let spool = std::sync::Arc::clone(spool);
    let (own, fleet) = tokio::task::spawn_blocking(move || {
        Ok::<_, penguin_queue::SpoolError>((
            spool.secret(SECRET_NAME)?,
            spool.stored_secret(FLEET_SECRET_NAME)?,
        ))
    })
    .await
    .map_err(|join| penguin_queue::SpoolError::Storage(format!("secret task failed: {join}")))??;
    let tokens = UnsubscribeTokens::new(own);
    if let Some(fleet) = fleet {
        tokens.adopt(fleet);
    }
    Ok(tokens)
}

/// Who unsubscribes from what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsubscribeClaims {
    /// The tenant whose suppression list gets the recipient.
    pub tenant: String,
    /// The campaign of the message (may be empty).
    pub campaign: String,
    /// The recipient address.
    pub recipient: String,
}

/// Makes and checks unsubscribe tokens. Signs with one key: this node's own, or the fleet's once
/// adopted ([`UnsubscribeTokens::adopt`]); verifies with that key and this node's own, so links the
/// node signed before it adopted the fleet's key keep working here.
pub struct UnsubscribeTokens {
    /// This node's own key.
    own: [u8; 32],
    /// The keys in use (replaced whole when the fleet's key is adopted).
    keys: arc_swap::ArcSwap<Keys>,
}

/// The signing key and the other key accepted.
struct Keys {
    /// The signing key's bytes.
    signing: [u8; 32],
    /// HMAC-SHA256 signing key (also the first verifying key).
    sign: hmac::Key,
    /// This node's own key when it is not the signing key.
    also: Option<hmac::Key>,
}

impl std::fmt::Debug for UnsubscribeTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnsubscribeTokens { key: <redacted> }")
    }
}

impl UnsubscribeTokens {
    /// Tokens signed with `key` (the spool's `Spool::secret("unsubscribe")`).
    pub fn new(key: [u8; 32]) -> Self {
        UnsubscribeTokens {
            own: key,
            keys: arc_swap::ArcSwap::from_pointee(Keys {
                signing: key,
                sign: hmac::Key::new(hmac::HMAC_SHA256, &key),
                also: None,
            }),
        }
    }

    /// Signs with `fleet` from now on (still verifying with this node's own key); whether the signing
    /// key changed.
    pub fn adopt(&self, fleet: [u8; 32]) -> bool {
        if self.keys.load().signing == fleet {
            return false;
        }
        let also = (fleet != self.own).then(|| hmac::Key::new(hmac::HMAC_SHA256, &self.own));
        self.keys.store(std::sync::Arc::new(Keys {
            signing: fleet,
            sign: hmac::Key::new(hmac::HMAC_SHA256, &fleet),
            also,
        }));
        true
    }

    /// The key tokens are signed with now (offered to the fleet when Redis has none).
    pub fn signing_key(&self) -> [u8; 32] {
        self.keys.load().signing
    }

    /// URL-safe token: base64url (no padding) of the encoded claims and a [`TAG_BYTES`]-byte
    /// HMAC-SHA256 tag. Deterministic.
    pub fn token(&self, claims: &UnsubscribeClaims) -> String {
        let mut bytes = encode_claims(claims);
        let tag = hmac::sign(&self.keys.load().sign, &bytes);
        bytes.extend_from_slice(&tag.as_ref()[..TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The claims of a token made with this key; `None` for anything malformed or forged (the tag is
    /// compared in constant time).
    pub fn verify(&self, token: &str) -> Option<UnsubscribeClaims> {
        if token.len() > MAX_TOKEN_CHARS {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        let split = bytes.len().checked_sub(TAG_BYTES)?;
        let (payload, tag) = bytes.split_at(split);
        let keys = self.keys.load();
        let matches = |key: &hmac::Key| {
            let expected = hmac::sign(key, payload);
            constant_time::verify_slices_are_equal(&expected.as_ref()[..TAG_BYTES], tag).is_ok()
        };
        if !matches(&keys.sign) && !keys.also.as_ref().is_some_and(matches) {
            return None;
        }
        decode_claims(payload)
    }
}

/// Version byte, then tenant, campaign and recipient, each as LEB128 length + bytes.
fn encode_claims(claims: &UnsubscribeClaims) -> Vec<u8> {
    let fields = [&claims.tenant, &claims.campaign, &claims.recipient];
    let mut out = Vec::with_capacity(1 + fields.iter().map(|f| f.len() + 2).sum::<usize>() + TAG_BYTES);
    out.push(TOKEN_VERSION);
    for field in fields {
        let mut length = field.len();
        loop {
            let low = (length & 0x7f) as u8;
            length >>= 7;
            if length == 0 {
                out.push(low);
                break;
            }
            out.push(low | 0x80);
        }
        out.extend_from_slice(field.as_bytes());
    }
    out
}

/// The inverse of [`encode_claims`]; `None` unless the payload is exactly one well-formed encoding.
fn decode_claims(payload: &[u8]) -> Option<UnsubscribeClaims> {
    let (&version, mut rest) = payload.split_first()?;
    if version != TOKEN_VERSION {
        return None;
    }
    let mut next = || -> Option<String> {
        let mut length = 0usize;
        for shift in (0..28).step_by(7) {
            let (&byte, tail) = rest.split_first()?;
            rest = tail;
            length |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                let (field, tail) = rest.split_at_checked(length)?;
                rest = tail;
                return String::from_utf8(field.to_vec()).ok();
            }
        }
        None
    };
    let claims = UnsubscribeClaims {
        tenant: next()?,
        campaign: next()?,
        recipient: next()?,
    };
    rest.is_empty().then_some(claims)
}

/// Longest header line (without CRLF) RFC 5322 allows.
const MAX_LINE: usize = 998;

/// The header fields to add: `List-Unsubscribe: <BASE/u/TOKEN>` (plus
/// `, <mailto:ADDR?subject=unsubscribe-TOKEN>` when `mailto` is given) and
/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click`, each ending in CRLF; the first is folded (CRLF +
/// space) between the two URIs if it would be longer than 998 octets.
pub fn header_fields(base_url: &str, mailto: Option<&str>, token: &str) -> Vec<u8> {
    const NAME: &str = "List-Unsubscribe: ";
    let https = format!("<{}/u/{token}>", base_url.trim_end_matches('/'));
    let mut out = Vec::with_capacity(NAME.len() + https.len() + 200);
    out.extend_from_slice(NAME.as_bytes());
    out.extend_from_slice(https.as_bytes());
    if let Some(address) = mailto {
        let mailto = format!("<mailto:{address}?subject=unsubscribe-{token}>");
        let separator: &[u8] = if NAME.len() + https.len() + 2 + mailto.len() > MAX_LINE {
            b",\r\n "
        } else {
            b", "
        };
        out.extend_from_slice(separator);
        out.extend_from_slice(mailto.as_bytes());
    }
    out.extend_from_slice(b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(tenant: &str, campaign: &str, recipient: &str) -> UnsubscribeClaims {
        UnsubscribeClaims {
            tenant: tenant.into(),
            campaign: campaign.into(),
            recipient: recipient.into(),
        }
    }

    fn tokens() -> UnsubscribeTokens {
        UnsubscribeTokens::new([7; 32])
    }

    #[test]
    fn tokens_roundtrip_and_are_deterministic_and_url_safe() {
        let long = "x".repeat(300) + "@example.com";
        let cases = [
            claims("acme", "spring-2026", "jane@example.com"),
            claims("acme", "", "jane@example.com"),
            claims("a+b=c", "camp aign/?&=+%", "first.last+tag=1@example.com"),
            claims("tënant", "été ✉ 2026", "用户@例子.广告"),
            claims("acme", "c", &long),
            claims("", "", ""),
        ];
        for case in cases {
            let token = tokens().token(&case);
            assert_eq!(tokens().token(&case), token, "deterministic");
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{token}"
            );
            assert_eq!(tokens().verify(&token), Some(case));
        }
    }

    #[test]
    fn forged_truncated_and_altered_tokens_are_refused() {
        let good = tokens().token(&claims("acme", "spring", "jane@example.com"));
        let other_key = UnsubscribeTokens::new([8; 32]);
        assert_eq!(other_key.verify(&good), None, "another key");
        for cut in 0..good.len() {
            assert_eq!(tokens().verify(&good[..cut]), None, "cut at {cut}");
        }
        for position in 0..good.len() {
            let mut altered = good.clone().into_bytes();
            altered[position] = if altered[position] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(altered).unwrap_or_default();
            assert_eq!(tokens().verify(&altered), None, "altered at {position}");
        }
        // Claims of the attacker's choice with a made-up tag.
        let mut forged = encode_claims(&claims("acme", "spring", "victim@example.com"));
        forged.extend_from_slice(&[0; TAG_BYTES]);
        assert_eq!(tokens().verify(&URL_SAFE_NO_PAD.encode(forged)), None);
        for junk in [
            "",
            "=",
            "a",
            "!!!!",
            "é",
            &"A".repeat(MAX_TOKEN_CHARS + 1),
            &(good.clone() + "="),
        ] {
            assert_eq!(tokens().verify(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn an_adopted_fleet_key_signs_and_the_own_key_still_verifies() {
        let tokens = tokens();
        let before = tokens.token(&claims("acme", "c", "a@x"));
        assert!(tokens.adopt([9; 32]));
        assert!(!tokens.adopt([9; 32]), "same key again");
        assert_eq!(tokens.signing_key(), [9; 32]);
        let after = tokens.token(&claims("acme", "c", "a@x"));
        assert_ne!(after, before);
        let fleet = UnsubscribeTokens::new([9; 32]);
        assert_eq!(
            fleet.token(&claims("acme", "c", "a@x")),
            after,
            "signed with the fleet's key"
        );
        assert!(tokens.verify(&before).is_some(), "own key still accepted here");
        assert!(tokens.verify(&after).is_some());
        assert_eq!(fleet.verify(&before), None, "the own key is not the fleet's");
        assert_eq!(UnsubscribeTokens::new([8; 32]).verify(&after), None);
    }

    #[test]
    fn well_signed_but_malformed_payloads_are_refused() {
        // Signed with the right key, so only the payload checks stand between them and success.
        let sign = |payload: &[u8]| {
            let key = hmac::Key::new(hmac::HMAC_SHA256, &[7; 32]);
            let mut bytes = payload.to_vec();
            bytes.extend_from_slice(&hmac::sign(&key, payload).as_ref()[..TAG_BYTES]);
            URL_SAFE_NO_PAD.encode(bytes)
        };
        let good = encode_claims(&claims("acme", "c", "r@x"));
        assert!(tokens().verify(&sign(&good)).is_some());
        let mut trailing = good.clone();
        trailing.push(0);
        let mut version = good.clone();
        version[0] = 2;
        let cases: [&[u8]; 6] = [
            &[],
            &trailing,
            &version,
            &good[..good.len() - 1],
            &[1, 0x80, 0x80, 0x80, 0x80, 0x01],
            &[1, 1, 0xff, 0, 0],
        ];
        for payload in cases {
            assert_eq!(tokens().verify(&sign(payload)), None, "{payload:?}");
        }
    }

    #[test]
    fn header_fields_format() {
        let fields = header_fields("https://u.example.com/", None, "TOK");
        assert_eq!(
            String::from_utf8_lossy(&fields),
            "List-Unsubscribe: <https://u.example.com/u/TOK>\r\n\
             List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        );
        let fields = header_fields("https://u.example.com", Some("unsub@example.com"), "TOK");
        assert_eq!(
            String::from_utf8_lossy(&fields),
            "List-Unsubscribe: <https://u.example.com/u/TOK>, \
             <mailto:unsub@example.com?subject=unsubscribe-TOK>\r\n\
             List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        );
    }

    #[test]
    fn long_header_is_folded_between_the_uris() {
        let token = "T".repeat(480);
        let fields = header_fields("https://u.example.com", Some("unsub@example.com"), &token);
        let text = String::from_utf8_lossy(&fields).into_owned();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("List-Unsubscribe: <https://") && lines[0].ends_with(">,"));
        assert!(lines[1].starts_with(" <mailto:unsub@example.com?subject=unsubscribe-TTT"));
        assert_eq!(lines[2], "List-Unsubscribe-Post: List-Unsubscribe=One-Click");
        assert_eq!(lines[3], "");
        assert!(lines.iter().all(|line| line.len() <= MAX_LINE));
    }
}
