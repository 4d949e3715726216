//! Building the delivery side from the config.

use std::sync::{Arc, Mutex};

use penguin_config::{Config, StartTls};
use penguin_policy::RetrySchedule;
use penguin_queue::Spool;
use tokio::sync::Notify;

use super::client::{ClientSettings, Timeouts, opportunistic_tls};
use super::dns::Resolver;
use super::routing::Router;
use super::scheduler::{Scheduler, Settings};
use super::{Delivery, DeliverySettings};
use crate::clock::SharedClock;
use crate::events::EventBus;
use crate::smtp::finish::Finisher;

/// The delivery settings of a config.
pub fn settings(config: &Config) -> DeliverySettings {
    let delivery = &config.delivery;
    let timeouts = Timeouts {
        connect: delivery.connect_timeout.get(),
        greeting: delivery.greeting_timeout.get(),
        command: delivery.command_timeout.get(),
        data_init: delivery.data_init_timeout.get(),
        data_block: delivery.data_block_timeout.get(),
        data_done: delivery.data_done_timeout.get(),
    };
    let tls = match delivery.starttls {
        StartTls::Opportunistic => Some(opportunistic_tls()),
        StartTls::Disabled => None,
    };
    DeliverySettings {
        hostname: config.smtp.hostname.clone(),
        port: delivery.port,
        relay_host: delivery.relay_host.clone(),
        client: ClientSettings {
            helo: config.smtp.hostname.clone(),
            source_ip: delivery.source_ip,
            tls,
            timeouts,
        },
        retry: RetrySchedule {
            intervals: delivery.retry.iter().map(|interval| interval.get()).collect(),
            max_age: delivery.max_age.get(),
            jitter_percent: delivery.retry_jitter_percent,
        },
        max_messages_in_flight: delivery.max_messages_in_flight,
        idle_timeout: delivery.connection_idle_timeout.get(),
        auto_suppress: config.suppression.auto_hard_bounce,
        tenants: None,
    }
}

/// Why the delivery side could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The resolver could not be set up.
    #[error("dns.nameservers: {0}")]
    Dns(#[from] super::dns::ResolverError),
    /// The shaping config could not be resolved.
    #[error("{0}")]
    Shaping(String),
}

/// The scheduler of a config (also used without delivery, e.g. paused, so suspensions still work).
pub fn scheduler(
    config: &Config,
    events: EventBus,
    driver: Arc<Notify>,
) -> Result<Arc<Mutex<Scheduler>>, SetupError> {
    let settings = Settings::from_config(config).map_err(SetupError::Shaping)?;
    Ok(Arc::new(Mutex::new(Scheduler::new(
        Arc::new(settings),
        events,
        driver,
    ))))
}

/// The parts a delivery side shares with the rest of the server.
pub struct Shared {
    /// The spool.
    pub spool: Arc<Spool>,
    /// The event stream.
    pub events: EventBus,
    /// Wakes the driver when mail is queued.
    pub wakeup: Arc<Notify>,
    /// Signs DSNs.
    pub finisher: Arc<Finisher>,
    /// The scheduler (from [`scheduler`]).
    pub scheduler: Arc<Mutex<Scheduler>>,
    /// Wakes the driver when the scheduler has work.
    pub driver: Arc<Notify>,
    /// Time of every decision.
    pub clock: SharedClock,
    /// The tenants (whether one wants DSNs is asked at each bounce: reloads and the API apply).
    pub tenants: crate::smtp::auth::SharedTenants,
}

/// The delivery side of a server: resolver, router and driver state.
pub fn build(config: &Config, shared: Shared) -> Result<Delivery, SetupError> {
    let dns = &config.dns;
    let resolver = Resolver::new(&dns.nameservers, dns.timeout.get(), dns.attempts)?;
    let router = Router::new(resolver, config.delivery.relay_host.clone(), config.delivery.port);
    let settings = DeliverySettings {
        tenants: Some(shared.tenants),
        ..settings(config)
    };
    Ok(Delivery::new(
        settings,
        shared.spool,
        router,
        shared.scheduler,
        shared.driver,
        shared.events,
        shared.wakeup,
        shared.finisher,
        shared.clock,
    ))
}
