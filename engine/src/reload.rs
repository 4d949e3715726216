//! Run-time reload of the config file, on SIGHUP or `POST /reload`, without a restart: the `[dkim]`
//! section (which selectors sign which domain — key rotation — and the missing-key action) and the
//! `[[tenant]]` list (accounts, passwords, sender domains, `list_unsubscribe`, `dkim_missing_key`).
//! Sessions already authenticated keep the tenant they logged in as. Other changes need a restart;
//! the reload reports which sections differ so the operator knows.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use penguin_config::Config;
use serde::Serialize;

use crate::smtp::auth::{SharedTenants, TenantDirectory};
use crate::smtp::finish::Finisher;

/// Why a reload did not happen (the running settings are unchanged).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The server runs with the embedded default config: there is no file to read again.
    #[error("the server was started without --config: there is no config file to reload")]
    NoConfigFile,
    /// The file does not parse or validate.
    #[error("{0}")]
    Invalid(String),
}

/// What a reload applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// The file read.
    pub config: String,
    /// Tenants configured now.
    pub tenants: usize,
    /// `[[dkim.domain]]` entries now.
    pub dkim_domains: usize,
    /// Changed settings that a reload does not apply (they need a restart).
    pub restart_needed: Vec<String>,
}

/// The parts of a running server a reload replaces.
pub struct Reloader {
    /// The `--config` file, if any.
    path: Option<PathBuf>,
    /// Signing settings.
    finisher: Arc<Finisher>,
    /// SMTP AUTH accounts.
    tenants: SharedTenants,
    /// Tenant names the HTTP API knows.
    tenant_names: Arc<ArcSwap<HashSet<String>>>,
    /// The config currently applied (to tell what else changed; the API reads it too).
    running: Arc<ArcSwap<Config>>,
    /// One reload at a time (SIGHUP and `POST /reload` may race).
    reloading: Mutex<()>,
}

impl Reloader {
    /// A reloader for a server running `config` (read from `path`, if any).
    pub fn new(
        path: Option<PathBuf>,
        config: Arc<ArcSwap<Config>>,
        finisher: Arc<Finisher>,
        tenants: SharedTenants,
        tenant_names: Arc<ArcSwap<HashSet<String>>>,
    ) -> Reloader {
        Reloader {
            path,
            finisher,
            tenants,
            tenant_names,
            running: config,
            reloading: Mutex::new(()),
        }
    }

    /// Reads the config file again and applies it; on any error nothing changes.
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let path = self.path.as_ref().ok_or(ReloadError::NoConfigFile)?;
        let config = Config::load(path).map_err(|errors| {
            ReloadError::Invalid(format!("invalid config {}:\n{errors}", path.display()))
        })?;
        let restart_needed = self.apply(config.clone());
        Ok(ReloadReport {
            config: path.display().to_string(),
            tenants: config.tenant.len(),
            dkim_domains: config.dkim.domain.len(),
            restart_needed,
        })
    }

    /// Applies `[dkim]` and `[[tenant]]` of `config`; returns the other settings that changed.
    fn apply(&self, config: Config) -> Vec<String> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(PoisonError::into_inner);
        let restart_needed = needs_restart(&self.running.load(), &config);
        self.finisher.reload(config.dkim.clone());
        self.tenants
            .store(Arc::new(TenantDirectory::from_config(&config)));
        self.tenant_names
            .store(Arc::new(crate::api::tenant_names(&config)));
        self.running.store(Arc::new(config));
        restart_needed
    }
}

/// The changed settings between `old` and `new` that only a restart applies.
fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    let mut check = |name: &str, differs: bool| {
        if differs {
            changed.push(name.to_owned());
        }
    };
    check("smtp", old.smtp != new.smtp);
    check("tls", old.tls != new.tls);
    check("spool", old.spool != new.spool);
    check("api", old.api != new.api);
    check("dns", old.dns != new.dns);
    check("delivery", old.delivery != new.delivery);
    check("log", old.log != new.log);
    check("unsubscribe", old.unsubscribe != new.unsubscribe);
    check("suppression", old.suppression != new.suppression);
    check("dkim.key_dir", old.dkim.key_dir != new.dkim.key_dir);
    // Delivery sends DSNs for every tenant it does not know as `dsn = false`.
    let dsn_off = |config: &Config| -> Vec<String> {
        config
            .tenant
            .iter()
            .filter(|t| !t.dsn)
            .map(|t| t.name.clone())
            .collect()
    };
    check("tenant.dsn", dsn_off(old) != dsn_off(new));
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sections_a_reload_cannot_apply_are_reported() {
        let old = Config::embedded_default();
        let mut new = old.clone();
        new.dkim.selectors = vec!["s2".into()];
        assert!(needs_restart(&old, &new).is_empty(), "selectors are applied");
        new.delivery.port = 2526;
        new.dkim.key_dir = "elsewhere".into();
        assert_eq!(needs_restart(&old, &new), ["delivery", "dkim.key_dir"]);
    }
}
