//! The other nodes' changes of tenants, SMTP logins and DKIM keys, applied here (`[cluster]`; see
//! [`crate::cluster::ApplyChange`]): stored in the spool and in memory as if made here, without
//! journaling them again, then the SMTP tenant directory is rebuilt (and the scheduler's tenant rates
//! set when a rate changed). A domain's DKIM key travels as its PEM text under
//! `dkim-key/DOMAIN/SELECTOR` and is written to this node's key directory with the key store's atomic
//! 0600 creation, so a domain added through one node signs on all of them.

use penguin_dkim::KeyStore;
use penguin_queue::SpoolError;

use super::{ApiTenant, LOGIN_PREFIX, SmtpLogin, TENANT_PREFIX, TenantError, TenantRegistry};

/// Control-key prefix of the replicated DKIM keys (never stored in CF `control`: the key file is
/// the local copy).
const DKIM_KEY_PREFIX: &str = "dkim-key/";

impl TenantRegistry {
    /// With `[cluster]`: journals the key file of `domain` and `selector` (validated names, the
    /// domain lowercased) for the other nodes, which write it to their key directories. Without
    /// `[cluster]`, nothing.
    pub fn share_dkim_key(&self, domain: &str, selector: &str) -> Result<(), TenantError> {
        let Some(replication) = &self.replication else {
            return Ok(());
        };
        let store = KeyStore::new(&self.config.load().dkim.key_dir);
        let path = store
            .key_path(domain, selector)
            .map_err(|error| TenantError::Key(error.to_string()))?;
        let pem = std::fs::read(&path)
            .map_err(|error| TenantError::Key(format!("cannot read {}: {error}", path.display())))?;
        let key = format!("{DKIM_KEY_PREFIX}{}/{selector}", domain.to_ascii_lowercase());
        replication.record(&key, Some(&pem), self.clock.now_ms())?;
        Ok(())
    }

    /// Another node stored (`Some`) or deleted (`None`) API tenant `name`.
    fn apply_tenant(&self, key: &str, name: &str, value: Option<&[u8]>) -> Result<(), SpoolError> {
        let before = self.get(name).and_then(|tenant| tenant.max_message_rate);
        let after = match value {
            Some(bytes) => {
                let Ok(mut tenant) = serde_json::from_slice::<ApiTenant>(bytes) else {
                    tracing::warn!(%key, "cluster: an unreadable tenant from another node");
                    return Ok(());
                };
                name.clone_into(&mut tenant.name);
                self.spool.put_control(key, bytes)?;
                let rate = tenant.max_message_rate;
                self.write_tenants().insert(name.to_owned(), tenant);
                rate
            }
            None => {
                self.spool.delete_control(key)?;
                self.write_tenants().remove(name);
                None
            }
        };
        self.rebuild();
        if before != after
            && let Some(scheduler) = &self.scheduler
        {
            let rates = self.rates();
            scheduler
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .set_api_tenant_rates(rates);
        }
        Ok(())
    }

    /// Another node stored (`Some`) or deleted (`None`) SMTP login `username`.
    fn apply_login(&self, key: &str, username: &str, value: Option<&[u8]>) -> Result<(), SpoolError> {
        match value {
            Some(bytes) => {
                let Ok(login) = serde_json::from_slice::<SmtpLogin>(bytes) else {
                    tracing::warn!(%key, "cluster: an unreadable SMTP login from another node");
                    return Ok(());
                };
                self.spool.put_control(key, bytes)?;
                self.write_logins().insert(username.to_owned(), login);
            }
            None => {
                self.spool.delete_control(key)?;
                self.write_logins().remove(username);
            }
        }
        self.rebuild();
        Ok(())
    }

    /// Another node shared the DKIM key of `DOMAIN/SELECTOR` (`rest`): written to the key directory
    /// (replacing a different key: the fleet signs with the last one shared). Key files are never
    /// deleted through the cluster.
    fn apply_dkim_key(&self, rest: &str, value: Option<&[u8]>) {
        let (Some((domain, selector)), Some(pem)) = (rest.split_once('/'), value) else {
            return;
        };
        let store = KeyStore::new(&self.config.load().dkim.key_dir);
        match store.install(domain, selector, pem) {
            Ok(true) => tracing::info!(%domain, %selector, "cluster: DKIM key installed from another node"),
            Ok(false) => {}
            Err(error) => tracing::error!(%error, "cluster: cannot install a DKIM key from another node"),
        }
    }
}

impl crate::cluster::ApplyChange for TenantRegistry {
    /// Applies another node's change of a tenant (`tenant/NAME`), an SMTP login
    /// (`smtp-login/USERNAME`) or a DKIM key (`dkim-key/DOMAIN/SELECTOR`).
    fn apply(&self, key: &str, value: Option<&[u8]>) -> bool {
        let applied = if let Some(name) = key.strip_prefix(TENANT_PREFIX) {
            self.apply_tenant(key, name, value)
        } else if let Some(username) = key.strip_prefix(LOGIN_PREFIX) {
            self.apply_login(key, username, value)
        } else if let Some(rest) = key.strip_prefix(DKIM_KEY_PREFIX) {
            self.apply_dkim_key(rest, value);
            Ok(())
        } else {
            return false;
        };
        if let Err(error) = applied {
            tracing::error!(%key, %error, "cannot store a tenant change from another node");
        }
        true
    }
}
