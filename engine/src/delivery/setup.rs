//! Building the delivery side from the config.

use std::sync::Arc;

use penguin_config::{Config, StartTls};
use penguin_policy::RetrySchedule;
use penguin_queue::Spool;
use tokio::sync::Notify;

use super::client::{ClientSettings, Timeouts, opportunistic_tls};
use super::dns::Resolver;
use super::pool::Pool;
use super::{Delivery, DeliverySettings};
use crate::events::EventBus;
use crate::metrics::Metrics;
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
        max_recipients_per_transaction: delivery.max_recipients_per_transaction,
        max_messages_in_flight: delivery.max_messages_in_flight,
        auto_suppress: config.suppression.auto_hard_bounce,
        dsn_by_tenant: config
            .tenant
            .iter()
            .map(|tenant| (tenant.name.clone(), tenant.dsn))
            .collect(),
    }
}

/// The delivery side of a server: resolver, connection pool and dispatcher state.
pub fn build(
    config: &Config,
    spool: &Arc<Spool>,
    metrics: &Arc<Metrics>,
    events: EventBus,
    wakeup: Arc<Notify>,
    finisher: Arc<Finisher>,
) -> Result<Delivery, super::dns::ResolverError> {
    let dns = &config.dns;
    let resolver = Resolver::new(&dns.nameservers, dns.timeout.get(), dns.attempts)?;
    let delivery = &config.delivery;
    let pool = Pool::new(
        delivery.max_connections,
        delivery.max_connections_per_host,
        delivery.connection_idle_timeout.get(),
        delivery.max_messages_per_connection,
        Arc::clone(metrics),
    );
    Ok(Delivery::new(
        settings(config),
        Arc::clone(spool),
        resolver,
        pool,
        events,
        wakeup,
        finisher,
    ))
}
