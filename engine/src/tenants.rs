//! The tenants of a running server: those of the config file (`[[tenant]]`, changed by editing the
//! file and reloading) and those made over the API (`POST /v1/tenants`, stored in the spool's control
//! records under `tenant/NAME`), plus the SMTP logins made over the API (`smtp-login/USERNAME`, argon2id
//! hashes). Every change rebuilds the SMTP tenant directory and the API's tenant names at once, so a
//! deleted tenant's logins fail from the next AUTH on.
//!
//! With `[cluster]` every change is journaled for the other nodes before it is stored (see
//! [`crate::cluster::Replication`]), and the other nodes' changes are applied here (`sync.rs`), as are
//! the DKIM keys of the domains added over the API (`dkim-key/DOMAIN/SELECTOR`).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use arc_swap::ArcSwap;
use penguin_config::{Config, MissingKeyAction};
use penguin_queue::{Spool, SpoolError};
use serde::{Deserialize, Serialize};

use crate::clock::{SharedClock, SystemClock};
use crate::cluster::Replication;
use crate::delivery::scheduler::Scheduler;
use crate::smtp::auth::{RELAY_TENANT, SharedTenants, Tenant, TenantDirectory};

mod sync;

/// Control-record prefix of API tenants.
const TENANT_PREFIX: &str = "tenant/";
/// Control-record prefix of SMTP logins.
const LOGIN_PREFIX: &str = "smtp-login/";

/// A tenant made over the API, as stored and shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiTenant {
    /// 1-64 characters from `A-Z a-z 0-9 . _ -`; not `default`, not a config tenant's.
    pub name: String,
    /// Domains it may use in MAIL FROM (lowercased), at least one.
    pub sender_domains: Vec<String>,
    /// Send DSNs to the envelope sender on bounce and expiry. Default true.
    #[serde(default = "yes")]
    pub dsn: bool,
    /// Add one-click unsubscribe headers. Default false.
    #[serde(default)]
    pub list_unsubscribe: bool,
    /// `sign`/`unsigned`/`refuse` override of `dkim.missing_key`. Default none.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub dkim_missing_key: Option<MissingKeyAction>,
    /// The IP pools its mail may use, its default (used without `X-Pool`) first. Default
    /// `["default"]`; each must be a configured pool (or `default`).
    #[serde(default)]
    pub pools: Vec<String>,
    /// Most recipients accepted per UTC day; past it MAIL gets `452 4.7.1`. Default none.
    #[serde(default)]
    pub daily_quota: Option<u64>,
    /// Most messages of this tenant, all deliveries together (`"N/s"`, `"N/min"`, `"N/h"`, `"N/d"`).
    /// Default none.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub max_message_rate: Option<penguin_config::MessageRate>,
    /// When it was made (RFC 3339; set by the server, a value sent is ignored).
    #[serde(default)]
    pub created: String,
}

/// `true`, the serde default of `dsn`.
fn yes() -> bool {
    true
}

/// One SMTP login made over the API.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SmtpLogin {
    /// Its tenant.
    pub tenant: String,
    /// argon2id PHC string of the password.
    pub password_hash: String,
    /// When it was made (RFC 3339).
    pub created: String,
}

/// Why a tenant change was refused.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// A field is invalid: (field, why).
    #[error("{0}: {1}")]
    Invalid(String, String),
    /// The tenant exists already, or comes from the config file (change it there).
    #[error("{0}")]
    Conflict(String),
    /// No such tenant.
    #[error("unknown tenant {0:?}")]
    NotFound(String),
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// A DKIM key file could not be read to share it with the other nodes.
    #[error("{0}")]
    Key(String),
}

/// The tenants (see the module documentation).
pub struct TenantRegistry {
    /// Where API tenants and logins are stored.
    spool: Arc<Spool>,
    /// The running config (its `[[tenant]]` list and pools).
    config: Arc<ArcSwap<Config>>,
    /// API tenants by name.
    tenants: RwLock<BTreeMap<String, ApiTenant>>,
    /// API logins by username.
    logins: RwLock<BTreeMap<String, SmtpLogin>>,
    /// What SMTP AUTH and reception read.
    directory: SharedTenants,
    /// The tenant names the API accepts.
    names: Arc<ArcSwap<HashSet<String>>>,
    /// With `[cluster]`: where changes are journaled for the other nodes.
    replication: Option<Replication>,
    /// The time of a journaled change.
    clock: SharedClock,
    /// Where the other nodes' changes of `max_message_rate` take effect.
    scheduler: Option<Arc<Mutex<Scheduler>>>,
}

impl TenantRegistry {
    /// Loads the API tenants and logins from the spool and builds the directory.
    pub fn load(spool: Arc<Spool>, config: Arc<ArcSwap<Config>>) -> Result<TenantRegistry, SpoolError> {
        let mut tenants = BTreeMap::new();
        for (key, value) in spool.control_records(TENANT_PREFIX)? {
            match serde_json::from_slice::<ApiTenant>(&value) {
                Ok(tenant) => drop(tenants.insert(tenant.name.clone(), tenant)),
                Err(error) => tracing::warn!(%key, %error, "ignoring an unreadable stored tenant"),
            }
        }
        let mut logins = BTreeMap::new();
        for (key, value) in spool.control_records(LOGIN_PREFIX)? {
            match serde_json::from_slice::<SmtpLogin>(&value) {
                Ok(login) => drop(logins.insert(key[LOGIN_PREFIX.len()..].to_string(), login)),
                Err(error) => tracing::warn!(%key, %error, "ignoring an unreadable stored SMTP login"),
            }
        }
        let registry = TenantRegistry {
            spool,
            config,
            tenants: RwLock::new(tenants),
            logins: RwLock::new(logins),
            directory: Arc::new(ArcSwap::from_pointee(TenantDirectory::from_config(
                &Config::default(),
            ))),
            names: Arc::new(ArcSwap::from_pointee(HashSet::new())),
            replication: None,
            clock: Arc::new(SystemClock),
            scheduler: None,
        };
        registry.rebuild();
        Ok(registry)
    }

    /// This registry with its changes journaled for the other nodes at `clock`'s time (`[cluster]`).
    pub fn with_replication(mut self, replication: Option<Replication>, clock: SharedClock) -> Self {
        self.replication = replication;
        self.clock = clock;
        self
    }

    /// This registry giving `scheduler` the tenants' rates when another node changed one.
    pub fn with_scheduler(mut self, scheduler: Arc<Mutex<Scheduler>>) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    /// Journals a change of control record `key` for the other nodes (with `[cluster]`), before it
    /// is stored here.
    fn journal(&self, key: &str, value: Option<&[u8]>) -> Result<(), SpoolError> {
        match &self.replication {
            Some(replication) => replication.record(key, value, self.clock.now_ms()),
            None => Ok(()),
        }
    }

    /// What SMTP AUTH and reception read.
    pub fn directory(&self) -> SharedTenants {
        Arc::clone(&self.directory)
    }

    /// The tenant names the API accepts (config, API, `default`).
    pub fn names(&self) -> Arc<ArcSwap<HashSet<String>>> {
        Arc::clone(&self.names)
    }

    /// Builds the directory and the names again from the running config and the API's tenants and
    /// logins (after a reload or an API change).
    pub fn rebuild(&self) {
        let config = self.config.load();
        let tenants: Vec<Tenant> = self.read_tenants().values().map(directory_tenant).collect();
        let logins: Vec<(String, String, String)> = self
            .read_logins()
            .iter()
            .map(|(username, login)| {
                (
                    username.clone(),
                    login.tenant.clone(),
                    login.password_hash.clone(),
                )
            })
            .collect();
        let directory = TenantDirectory::build(&config, &tenants, &logins);
        self.names.store(Arc::new(directory.names()));
        self.directory.store(Arc::new(directory));
    }

    /// Whether `name` is a tenant of the config file.
    pub fn is_configured(&self, name: &str) -> bool {
        name == RELAY_TENANT || self.config.load().tenant.iter().any(|t| t.name == name)
    }

    /// The API tenant `name`.
    pub fn get(&self, name: &str) -> Option<ApiTenant> {
        self.read_tenants().get(name).cloned()
    }

    /// The `max_message_rate` of every API tenant that has one (for the scheduler).
    pub fn rates(&self) -> Vec<(String, penguin_config::MessageRate)> {
        self.list()
            .into_iter()
            .filter_map(|tenant| Some((tenant.name, tenant.max_message_rate?)))
            .collect()
    }

    /// Every API tenant, by name.
    pub fn list(&self) -> Vec<ApiTenant> {
        self.read_tenants().values().cloned().collect()
    }

    /// Validates and stores (synced) a new tenant; 409 when the name is taken.
    pub fn create(&self, mut tenant: ApiTenant, created: String) -> Result<ApiTenant, TenantError> {
        self.validate(&mut tenant)?;
        if self.is_configured(&tenant.name) || self.read_tenants().contains_key(&tenant.name) {
            return Err(TenantError::Conflict(format!("tenant {:?} exists", tenant.name)));
        }
        tenant.created = created;
        self.store(&tenant)?;
        Ok(tenant)
    }

    /// Replaces an API tenant's settings (the name and creation time stay).
    pub fn replace(&self, name: &str, mut tenant: ApiTenant) -> Result<ApiTenant, TenantError> {
        let existing = self.existing(name)?;
        tenant.name = existing.name;
        tenant.created = existing.created;
        self.validate(&mut tenant)?;
        self.store(&tenant)?;
        Ok(tenant)
    }

    /// Deletes an API tenant and its SMTP logins (synced); its queued mail stays and is delivered.
    pub fn delete(&self, name: &str) -> Result<(), TenantError> {
        self.existing(name)?;
        let usernames: Vec<String> = self.logins_of(name).into_iter().map(|(u, _)| u).collect();
        for username in usernames {
            let key = format!("{LOGIN_PREFIX}{username}");
            self.journal(&key, None)?;
            self.spool.delete_control(&key)?;
            self.write_logins().remove(&username);
        }
        let key = format!("{TENANT_PREFIX}{name}");
        self.journal(&key, None)?;
        self.spool.delete_control(&key)?;
        self.write_tenants().remove(name);
        self.rebuild();
        Ok(())
    }

    /// Stores a new SMTP login of `tenant` with this argon2id hash.
    pub fn add_login(&self, username: &str, login: SmtpLogin) -> Result<(), TenantError> {
        let taken = self.read_logins().contains_key(username)
            || self.config.load().tenant.iter().any(|t| t.username == username);
        if taken {
            return Err(TenantError::Conflict(format!("username {username:?} exists")));
        }
        let value =
            serde_json::to_vec(&login).map_err(|e| TenantError::Invalid("login".into(), e.to_string()))?;
        let key = format!("{LOGIN_PREFIX}{username}");
        self.journal(&key, Some(&value))?;
        self.spool.put_control(&key, &value)?;
        self.write_logins().insert(username.to_string(), login);
        self.rebuild();
        Ok(())
    }

    /// The API-made logins of `tenant`: (username, created).
    pub fn logins_of(&self, tenant: &str) -> Vec<(String, String)> {
        self.read_logins()
            .iter()
            .filter(|(_, login)| login.tenant == tenant)
            .map(|(username, login)| (username.clone(), login.created.clone()))
            .collect()
    }

    /// Deletes login `username` of `tenant`: true if it existed. The next AUTH with it fails.
    pub fn delete_login(&self, tenant: &str, username: &str) -> Result<bool, TenantError> {
        let owned = self
            .read_logins()
            .get(username)
            .is_some_and(|login| login.tenant == tenant);
        if !owned {
            return Ok(false);
        }
        let key = format!("{LOGIN_PREFIX}{username}");
        self.journal(&key, None)?;
        self.spool.delete_control(&key)?;
        self.write_logins().remove(username);
        self.rebuild();
        Ok(true)
    }

    /// The API tenant `name`; 409 for a config tenant, 404 for none.
    pub fn existing(&self, name: &str) -> Result<ApiTenant, TenantError> {
        if let Some(tenant) = self.get(name) {
            return Ok(tenant);
        }
        if self.is_configured(name) {
            return Err(TenantError::Conflict(format!(
                "tenant {name:?} comes from the config file: change it there and reload"
            )));
        }
        Err(TenantError::NotFound(name.to_string()))
    }

    /// Stores `tenant` (synced) and rebuilds.
    fn store(&self, tenant: &ApiTenant) -> Result<(), TenantError> {
        let value =
            serde_json::to_vec(tenant).map_err(|e| TenantError::Invalid("body".into(), e.to_string()))?;
        let key = format!("{TENANT_PREFIX}{}", tenant.name);
        self.journal(&key, Some(&value))?;
        self.spool.put_control(&key, &value)?;
        self.write_tenants().insert(tenant.name.clone(), tenant.clone());
        self.rebuild();
        Ok(())
    }

    /// Checks the fields; lowercases the domains and fills the default pool.
    fn validate(&self, tenant: &mut ApiTenant) -> Result<(), TenantError> {
        let invalid = |field: &str, why: String| Err(TenantError::Invalid(format!("body.{field}"), why));
        let name_ok = !tenant.name.is_empty()
            && tenant.name.len() <= 64
            && tenant
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            return invalid(
                "name",
                format!("{:?}: use 1-64 characters from A-Z a-z 0-9 . _ -", tenant.name),
            );
        }
        if tenant.name.eq_ignore_ascii_case(RELAY_TENANT) {
            return invalid("name", "\"default\" is the relay tenant".into());
        }
        if tenant.sender_domains.is_empty() {
            return invalid("sender_domains", "list at least one domain".into());
        }
        for domain in &mut tenant.sender_domains {
            *domain = domain.trim().to_ascii_lowercase();
            if let Err(why) = penguin_config::check_domain(domain) {
                return invalid("sender_domains", format!("{domain:?}: {why}"));
            }
        }
        if tenant.pools.is_empty() {
            tenant.pools.push(penguin_config::DEFAULT_POOL.to_string());
        }
        let config = self.config.load();
        let known: Vec<String> = config.pools().into_iter().map(|pool| pool.name).collect();
        if let Some(unknown) = tenant.pools.iter().find(|pool| !known.contains(pool)) {
            return invalid(
                "pools",
                format!("{unknown:?} is not a configured pool ({known:?})"),
            );
        }
        Ok(())
    }

    /// API tenants, for reading.
    fn read_tenants(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ApiTenant>> {
        self.tenants.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// API tenants, for writing.
    fn write_tenants(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, ApiTenant>> {
        self.tenants.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logins, for reading.
    fn read_logins(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, SmtpLogin>> {
        self.logins.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logins, for writing.
    fn write_logins(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, SmtpLogin>> {
        self.logins.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The directory's view of an API tenant.
fn directory_tenant(tenant: &ApiTenant) -> Tenant {
    Tenant {
        list_unsubscribe: tenant.list_unsubscribe,
        dkim_missing_key: tenant.dkim_missing_key,
        pools: tenant.pools.clone(),
        default_pool: tenant.pools.first().cloned(),
        dsn: tenant.dsn,
        daily_quota: tenant.daily_quota,
        ..Tenant::new(
            tenant.name.clone(),
            Some(tenant.sender_domains.iter().cloned().collect()),
        )
    }
}
