//! Tenants and their credentials: SASL PLAIN/LOGIN decoding (pure) and argon2 verification.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use penguin_config::{Config, MissingKeyAction};

/// Verified against when the username is unknown, so an unknown user costs the same time as a known one.
/// The argon2id hash (default parameters, as `hash_password` makes) of random bytes nobody kept; a
/// constant, so starting the server does not spend an argon2 computation on it.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$shLUNFWQQ0H1vaLdMHGadg$lQK4jUnKpXv37pcZGSJitZmV0Dckr7lxWt9u5s9hWYI";

/// The tenant name of clients that relay without AUTH from `relay_networks`.
pub const RELAY_TENANT: &str = "default";

/// A tenant as the SMTP server sees it: whose mail this is and which senders it may use.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The tenant's name (spool, metrics and events carry it).
    pub name: String,
    /// Domains the tenant may use in MAIL FROM; `None` = any (the relay tenant).
    pub sender_domains: Option<HashSet<String>>,
    /// Add one-click unsubscribe headers (`[[tenant]] list_unsubscribe`).
    pub list_unsubscribe: bool,
    /// The tenant's `dkim_missing_key` override.
    pub dkim_missing_key: Option<MissingKeyAction>,
    /// The IP pools its messages may choose with `X-Pool` (its default pool first).
    pub pools: Vec<String>,
    /// Written into the envelope when a message names no `X-Pool` (tenants made over the API; config
    /// tenants leave it to the scheduler's settings).
    pub default_pool: Option<String>,
    /// Send DSNs to the envelope sender on bounce and expiry (`[[tenant]] dsn`).
    pub dsn: bool,
    /// Most recipients accepted per UTC day (`[[tenant]] daily_quota`); `None` = no quota.
    pub daily_quota: Option<u64>,
}

impl Tenant {
    /// A tenant with default signing and unsubscribe settings (the relay tenant, tests).
    pub fn new(name: impl Into<String>, sender_domains: Option<HashSet<String>>) -> Tenant {
        Tenant {
            name: name.into(),
            sender_domains,
            list_unsubscribe: false,
            dkim_missing_key: None,
            pools: vec!["default".to_string()],
            default_pool: None,
            dsn: true,
            daily_quota: None,
        }
    }

    /// Whether MAIL FROM with this domain (any case) is allowed for the tenant.
    pub fn may_send_from(&self, domain: &str) -> bool {
        match &self.sender_domains {
            None => true,
            Some(domains) => domains.contains(&domain.to_ascii_lowercase()),
        }
    }
}

/// One SMTP AUTH account.
#[derive(Debug)]
struct Account {
    /// The tenant the account logs into.
    tenant: Arc<Tenant>,
    /// PHC string of the argon2 hash (checked to parse when the config was validated).
    password_hash: String,
}

/// The tenant directory of a running server, replaced as a whole when the config is reloaded.
pub type SharedTenants = Arc<arc_swap::ArcSwap<TenantDirectory>>;

/// All tenants with their credentials, built from the config.
#[derive(Debug)]
pub struct TenantDirectory {
    /// Accounts by SMTP AUTH username.
    accounts: HashMap<String, Account>,
    /// Every tenant by name (the relay tenant included).
    by_name: HashMap<String, Arc<Tenant>>,
    /// The tenant of relay_networks clients.
    relay_tenant: Arc<Tenant>,
    /// Hash verified against when the username is unknown, so timing does not reveal valid usernames.
    decoy_hash: String,
}

impl TenantDirectory {
    /// Builds the directory from validated config.
    pub fn from_config(config: &Config) -> TenantDirectory {
        TenantDirectory::build(config, &[], &[])
    }

    /// Builds the directory from validated config, the tenants made over the API (a config tenant of
    /// the same name wins) and the SMTP logins made over the API (`(username, tenant, hash)`).
    pub fn build(
        config: &Config,
        api_tenants: &[Tenant],
        logins: &[(String, String, String)],
    ) -> TenantDirectory {
        let mut by_name: HashMap<String, Arc<Tenant>> = HashMap::new();
        let relay_tenant = Arc::new(Tenant {
            pools: config.tenant_pools(RELAY_TENANT).1,
            ..Tenant::new(RELAY_TENANT, None)
        });
        by_name.insert(RELAY_TENANT.to_string(), Arc::clone(&relay_tenant));
        for tenant in api_tenants {
            by_name.insert(tenant.name.clone(), Arc::new(tenant.clone()));
        }
        let mut accounts = HashMap::new();
        for tenant in &config.tenant {
            let domains = tenant
                .sender_domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect();
            let shared = Arc::new(Tenant {
                list_unsubscribe: tenant.list_unsubscribe,
                dkim_missing_key: tenant.dkim_missing_key,
                pools: config.tenant_pools(&tenant.name).1,
                dsn: tenant.dsn,
                daily_quota: tenant.daily_quota,
                ..Tenant::new(tenant.name.clone(), Some(domains))
            });
            by_name.insert(tenant.name.clone(), Arc::clone(&shared));
            let account = Account {
                tenant: shared,
                password_hash: tenant.password_hash.clone(),
            };
            accounts.insert(tenant.username.clone(), account);
        }
        for (username, tenant, hash) in logins {
            if let Some(tenant) = by_name.get(tenant).filter(|t| t.name != RELAY_TENANT)
                && !accounts.contains_key(username)
            {
                let account = Account {
                    tenant: Arc::clone(tenant),
                    password_hash: hash.clone(),
                };
                accounts.insert(username.clone(), account);
            }
        }
        TenantDirectory {
            accounts,
            by_name,
            relay_tenant,
            decoy_hash: DECOY_HASH.to_string(),
        }
    }

    /// The tenant named `name`, if there is one.
    pub fn tenant(&self, name: &str) -> Option<Arc<Tenant>> {
        self.by_name.get(name).cloned()
    }

    /// Every tenant's name (the relay tenant `default` included).
    pub fn names(&self) -> HashSet<String> {
        self.by_name.keys().cloned().collect()
    }

    /// The tenant of clients in relay_networks.
    pub fn relay_tenant(&self) -> Arc<Tenant> {
        Arc::clone(&self.relay_tenant)
    }

    /// Checks credentials (CPU-heavy: call it off the async runtime). `None` on any mismatch.
    pub fn verify(&self, username: &str, password: &[u8]) -> Option<Arc<Tenant>> {
        match self.accounts.get(username) {
            Some(account) => {
                verify_password(&account.password_hash, password).then(|| Arc::clone(&account.tenant))
            }
            None => {
                verify_password(&self.decoy_hash, password);
                None
            }
        }
    }
}

/// Hashes a password as an argon2id PHC string (`penguin-mta hash-password`).
pub fn hash_password(password: &[u8]) -> Result<String, argon2::password_hash::Error> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes)?;
    Ok(Argon2::default().hash_password(password, &salt)?.to_string())
}

/// Verifies a password against a PHC string; false if the hash does not parse.
fn verify_password(phc: &str, password: &[u8]) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| Argon2::default().verify_password(password, &hash).is_ok())
}

/// Credentials a client presented.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The authentication identity (our username).
    pub username: String,
    /// The password bytes.
    pub password: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why a SASL response was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslError {
    /// Not valid base64 or not the mechanism's format.
    Malformed,
    /// The client sent "*".
    Cancelled,
}

/// Decodes one base64 SASL response line (without CRLF); "=" is an empty response.
pub fn decode_response(line: &str) -> Result<Vec<u8>, SaslError> {
    match line.trim() {
        "*" => Err(SaslError::Cancelled),
        "=" => Ok(Vec::new()),
        text => BASE64.decode(text).map_err(|_| SaslError::Malformed),
    }
}

/// RFC 4616 PLAIN: `[authzid] NUL authcid NUL passwd`. An authzid other than the authcid is refused.
pub fn parse_plain(message: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = message.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    let username = std::str::from_utf8(authcid).map_err(|_| SaslError::Malformed)?;
    if username.is_empty() || (!authzid.is_empty() && authzid != authcid) {
        return Err(SaslError::Malformed);
    }
    Ok(Credentials {
        username: username.to_string(),
        password: password.to_vec(),
    })
}

/// A LOGIN username response as text.
pub fn parse_login_username(message: &[u8]) -> Result<String, SaslError> {
    match std::str::from_utf8(message) {
        Ok(name) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(SaslError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_table() {
        let creds = |u: &str, p: &str| {
            Ok(Credentials {
                username: u.into(),
                password: p.as_bytes().to_vec(),
            })
        };
        let cases: &[(&[u8], Result<Credentials, SaslError>)] = &[
            (b"\0acme\0secret", creds("acme", "secret")),
            (b"acme\0acme\0secret", creds("acme", "secret")),
            (b"\0acme\0", creds("acme", "")),
            (b"other\0acme\0secret", Err(SaslError::Malformed)),
            (b"\0\0secret", Err(SaslError::Malformed)),
            (b"acme\0secret", Err(SaslError::Malformed)),
            (b"\0acme\0secret\0x", Err(SaslError::Malformed)),
            (b"\0\xff\0x", Err(SaslError::Malformed)),
        ];
        for (message, expected) in cases {
            assert_eq!(&parse_plain(message), expected, "{message:?}");
        }
    }

    #[test]
    fn responses_table() {
        assert_eq!(
            decode_response("AGFjbWUAc2VjcmV0"),
            Ok(b"\0acme\0secret".to_vec())
        );
        assert_eq!(decode_response("="), Ok(Vec::new()));
        assert_eq!(decode_response("*"), Err(SaslError::Cancelled));
        assert_eq!(decode_response("not base64!"), Err(SaslError::Malformed));
    }

    #[test]
    fn the_decoy_is_a_real_argon2id_hash() {
        let hash = PasswordHash::new(DECOY_HASH).expect("parses");
        assert_eq!(hash.algorithm.as_str(), "argon2id", "same cost as real accounts");
        assert!(!verify_password(DECOY_HASH, b""));
    }

    #[test]
    fn hash_then_verify() {
        let hash = hash_password(b"correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, b"correct horse"));
        assert!(!verify_password(&hash, b"wrong"));
        assert!(!verify_password("not a phc string", b"x"));
    }

    #[test]
    fn tenant_sender_domains() {
        let tenant = Tenant::new("acme", Some(["acme.example".to_string()].into()));
        assert!(tenant.may_send_from("ACME.example"));
        assert!(!tenant.may_send_from("evil.example"));
        assert!(!tenant.may_send_from("sub.acme.example"));
        let relay = Tenant::new(RELAY_TENANT, None);
        assert!(relay.may_send_from("anything.example"));
    }
}
