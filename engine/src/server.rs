//! Wiring: `serve(config, listeners, shutdown)` opens the spool, starts the SMTP and HTTP
//! listeners, and on shutdown stops accepting, lets transactions finish and closes the spool.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use penguin_config::Config;
use penguin_policy::{AuthThrottle, AuthThrottleRule};
use penguin_queue::{IdGenerator, Spool, SpoolError, SpoolOptions};
use tokio::sync::{Notify, watch};

use crate::api::{self, ApiState, ShapingState};
use crate::clock::{SharedClock, SystemClock};
use crate::delivery;
use crate::delivery::suspensions::Suspensions;
use crate::event_log::EventLog;
use crate::events::{EventBus, EventSink};
use crate::metrics::{CommitMetrics, Metrics};
use crate::reload::{ReloadError, ReloadReport, Reloader};
use crate::reputation::{Checker, CheckerParts, Reputation};
use crate::smtp::auth::SharedTenants;
use crate::smtp::connection::ConnectionContext;
use crate::smtp::finish::{Finisher, UnsubscribeLinks};
use crate::smtp::listener::{ConnectionLimits, SmtpServer};
use crate::smtp::session::{SessionParams, SessionShared, SpoolGauge};
use crate::tenants::TenantRegistry;
use crate::tls::{self, TlsSetupError};
use crate::unsubscribe::UnsubscribeTokens;
use arc_swap::ArcSwap;
use penguin_dkim::KeyStore;
use std::path::PathBuf;

mod fleet;

/// Most clients tracked by the AUTH lockout at once (bounded memory under a spray of addresses).
const MAX_THROTTLED_CLIENTS: usize = 100_000;

/// Sockets the server listens on, bound before `serve` so tests can bind port 0 and read the port.
pub struct Listeners {
    /// SMTP listeners (`smtp.listen`).
    pub smtp: Vec<std::net::TcpListener>,
    /// The HTTP control API listener (`api.listen`).
    pub api: std::net::TcpListener,
    /// The public HTTP listener (`public.listen`): one-click unsubscribe.
    pub public: std::net::TcpListener,
}

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listen address could not be bound.
    #[error("{field}: cannot listen on {address}: {source}")]
    Bind {
        /// The config field ("smtp.listen", "api.listen" or "public.listen").
        field: &'static str,
        /// The address.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// The delivery side (resolver, shaping settings) could not be set up.
    #[error(transparent)]
    Delivery(#[from] delivery::setup::SetupError),
    /// The event log could not be opened.
    #[error("log.events: cannot open {}: {source}", path.display())]
    EventLog {
        /// The configured path.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An egress address of the config (`source[i].ip`, `delivery.source_ip`) is not an address of this
    /// host (see [`crate::egress_check`]).
    #[error("{0}")]
    Egress(penguin_config::ConfigErrors),
    /// The spool could not be opened or closed.
    #[error("spool.path: {0}")]
    Spool(#[from] SpoolError),
    /// `[cluster]` could not be set up (its Redis URL).
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// Another IO failure of the runtime.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Listeners {
    /// Binds every address of the config.
    pub fn bind(config: &Config) -> Result<Listeners, ServeError> {
        let bind = |field, address: SocketAddr| {
            std::net::TcpListener::bind(address).map_err(|source| ServeError::Bind {
                field,
                address,
                source,
            })
        };
        let smtp = config
            .smtp
            .listen
            .iter()
            .map(|&address| bind("smtp.listen", address))
            .collect::<Result<_, _>>()?;
        Ok(Listeners {
            smtp,
            api: bind("api.listen", config.api.listen)?,
            public: bind("public.listen", config.public.listen)?,
        })
    }
}

/// What SMTP reception asks of the spool and delivery: free space, suppression, usage, campaigns.
struct ReceptionGauge {
    /// The spool.
    spool: Arc<Spool>,
    /// Today, for the daily quota.
    clock: SharedClock,
    /// Cancelled campaigns.
    cancellations: Arc<delivery::Cancellations>,
    /// With `[cluster]`: the other nodes' counts for the daily quota (a cache, never waited on).
    cluster: Option<crate::cluster::Cluster>,
}

impl SpoolGauge for ReceptionGauge {
    fn has_free_space(&self) -> bool {
        self.spool.has_free_space()
    }

    fn suppression_reason(&self, tenant: &str, address: &str) -> Result<Option<&'static str>, String> {
        self.spool
            .suppression(tenant, address)
            .map(|entry| entry.map(|entry| entry.reason.as_str()))
            .map_err(|error| error.to_string())
    }

    fn accepted_today(&self, tenant: &str) -> Result<u64, String> {
        let (cluster, now_ms) = (self.cluster.as_ref(), self.clock.now_ms());
        crate::cluster::fleet_accepted_today(&self.spool, cluster, tenant, now_ms)
            .map_err(|error| error.to_string())
    }

    fn campaign_cancelled(&self, tenant: &str, campaign: &str) -> bool {
        self.cancellations.campaign_cancelled(tenant, campaign)
    }
}

/// Opens the spool (running recovery) off the async runtime.
pub async fn open_spool(config: &Config, metrics: &Arc<Metrics>) -> Result<Arc<Spool>, ServeError> {
    let mut options = SpoolOptions::new(config.spool.path.clone());
    options.min_free_space = config.spool.min_free_space.bytes();
    options.max_batch_messages = config.spool.max_batch_messages;
    options.max_batch_bytes = config.spool.max_batch_bytes.bytes() as usize;
    options.observer = Some(Arc::new(CommitMetrics(Arc::clone(metrics))));
    let spool = tokio::task::spawn_blocking(move || Spool::open(options))
        .await
        .map_err(|join| ServeError::Io(std::io::Error::other(join)))??;
    let recovery = spool.recovery();
    tracing::info!(
        messages = recovery.messages,
        recipients = recovery.recipients,
        duration_ms = recovery.duration.as_millis() as u64,
        "spool recovered"
    );
    Ok(Arc::new(spool))
}

/// Runs the server until `shutdown` completes, then stops gracefully (see the module doc). Without a
/// config file there is nothing to reload: see [`serve_with_reload`].
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_with_reload(config, None, listeners, shutdown).await
}

/// [`serve`] for a config read from `config_path`: SIGHUP and `POST /reload` read that file again and
/// apply its `[dkim]` and `[[tenant]]` sections (see [`crate::reload`]).
pub async fn serve_with_reload(
    config: Config,
    config_path: Option<PathBuf>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_with_clock(config, config_path, Arc::new(SystemClock), listeners, shutdown).await
}

/// [`serve_with_reload`] with the clock that delivery, shaping, suspensions and retries read (tests
/// pass a [`crate::clock::ManualClock`] to run an hour of limits in seconds).
pub async fn serve_with_clock(
    config: Config,
    config_path: Option<PathBuf>,
    clock: SharedClock,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let acceptor = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let metrics = Arc::new(Metrics::new());
    let spool = open_spool(&config, &metrics).await?;
    let webhooks =
        crate::webhooks::Webhooks::load(Arc::clone(&spool), config.webhooks.clone(), Arc::clone(&clock))?;
    let (events, event_log) = event_bus(&config, &metrics, &webhooks)?;
    let wakeup = Arc::new(Notify::new());
    let tokens = Arc::new(crate::unsubscribe::load(&spool).await?);
    if let Some(cluster) = &config.cluster {
        // Links are signed with the fleet's key from the first message (bounded by redis_timeout).
        crate::cluster::share_unsubscribe_secret_at_start(cluster, &spool, &tokens).await;
    }
    let finisher = Arc::new(finisher(&config, &listeners, Arc::clone(&tokens))?);
    let running = Arc::new(ArcSwap::from_pointee(config.clone()));
    let registry = TenantRegistry::load(Arc::clone(&spool), Arc::clone(&running))?;
    let tenants: SharedTenants = registry.directory();
    let quota_tenants = Arc::clone(&tenants);
    let (delivery, shaping) = delivery_side(
        &config,
        &spool,
        &events,
        (Arc::clone(&wakeup), Arc::clone(&tenants)),
        Arc::clone(&finisher),
        Arc::clone(&clock),
    )?;
    let in_flight = delivery.in_flight();
    let (registry, api_keys) = accounts(registry, &config, (&spool, &clock), &shaping)?;
    shaping.lock().set_api_tenant_rates(registry.rates());
    let campaigns = load_campaigns(&config, &spool, &shaping, &delivery, (&wakeup, &clock))?;
    let cluster = cluster_handle(&config, &events, &metrics, &clock, (&spool, &in_flight))?;
    let warmup = load_warmup(&config, &spool, &shaping, &events, (&clock, cluster.as_ref()))?;
    let reloader = Arc::new(Reloader::new(
        config_path.clone(),
        Arc::clone(&running),
        Arc::clone(&finisher),
        Arc::clone(&registry),
    ));
    let (reputation, checker) = reputation_checker(&config, &shaping, &events, &metrics, &wakeup)?;
    let appliers: Vec<Arc<dyn crate::cluster::ApplyChange>> = vec![
        Arc::new(shaping.suspensions.clone()),
        Arc::new(campaigns.clone()),
        Arc::clone(&registry) as Arc<dyn crate::cluster::ApplyChange>,
        Arc::new(api_keys.clone()),
        Arc::new(warmup.clone()),
    ];
    // With [cluster] the limits are the fleet's: slots, claims, rate changes and leases from Redis.
    let fleet = cluster.as_ref().map(|cluster| {
        let wakes = fleet::share_limits(cluster, &config, &shaping, &delivery);
        let parts = fleet::FleetParts {
            scheduler: Arc::clone(&shaping.scheduler),
            spool: Arc::clone(&spool),
            tokens: Arc::clone(&tokens),
            tenants: Arc::clone(&quota_tenants),
            appliers,
            sources: config.sources().into_iter().map(|source| source.name).collect(),
        };
        (cluster.clone(), wakes, parts)
    });
    let api_state = ApiState {
        metrics: Arc::clone(&metrics),
        spool: Arc::clone(&spool),
        in_flight,
        events: events.clone(),
        tokens: Arc::clone(&tokens),
        tenants: registry.names(),
        registry,
        reloader: Some(Arc::clone(&reloader)),
        config: running,
        config_path,
        shaping,
        campaigns,
        injection: Arc::new(api::inject::Injection {
            finisher: Arc::clone(&finisher),
            ids: penguin_queue::IdGenerator::new(),
            wakeup: Arc::clone(&wakeup),
            in_progress: std::sync::Mutex::new(std::collections::HashSet::new()),
            hostname: config.smtp.hostname.clone(),
        }),
        webhooks: Arc::clone(&webhooks),
        reputation,
        warmup: warmup.clone(),
        cluster: cluster.clone(),
        auth: api::Authenticator::new(api_keys, &config),
    };
    let services = ReceptionServices {
        events,
        wakeup,
        finisher,
        tenants,
        clock: Arc::clone(&clock),
        cancellations: delivery.cancellations(),
        cluster: cluster.clone(),
    };
    webhooks.start(services.events.clone());
    let smtp = smtp_server(&config, acceptor, &spool, &metrics, services);
    let (stop, stopped) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners.smtp {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tracing::info!(address = %listener.local_addr()?, "SMTP listening");
        tasks.spawn(Arc::clone(&smtp).run(listener, stopped.clone()));
    }
    if config.delivery.paused {
        tracing::warn!("delivery.paused is set: accepted mail stays queued");
        drop(delivery);
    } else {
        tasks.spawn(Arc::new(delivery).run(stopped.clone(), config.smtp.shutdown_grace.get()));
    }
    spawn_http(
        listeners.api,
        listeners.public,
        api_state,
        stopped.clone(),
        &mut tasks,
    )?;
    if let Some(checker) = checker {
        tasks.spawn(checker.run(stopped.clone()));
    }
    if let Some((cluster, wakes, parts)) = fleet {
        fleet::spawn_tasks(cluster, wakes, parts, &stopped, &mut tasks);
    }
    tasks.spawn(warmup.run(stopped.clone()));
    tasks.spawn(on_sighup(event_log.clone(), reloader, stopped.clone()));
    shutdown.await;
    stop_serving((stop, tasks), webhooks, smtp, event_log, spool).await
}

/// Stops accepting, lets the tasks finish (transactions and deliveries in flight), then closes the
/// webhooks, the event log and the spool.
async fn stop_serving(
    (stop, mut tasks): (watch::Sender<bool>, tokio::task::JoinSet<()>),
    webhooks: Arc<crate::webhooks::Webhooks>,
    smtp: Arc<SmtpServer>,
    event_log: Option<Arc<EventLog>>,
    spool: Arc<Spool>,
) -> Result<(), ServeError> {
    tracing::info!("shutting down: no new connections, finishing transactions and deliveries in flight");
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    webhooks.shutdown().await;
    drop(webhooks);
    drop(smtp);
    if let Some(log) = &event_log {
        log.flush();
    }
    close_spool(spool).await?;
    tracing::info!("stopped");
    Ok(())
}

/// The campaign states (with `[cluster]` journaled for the other nodes), loaded and in force.
fn load_campaigns(
    config: &Config,
    spool: &Arc<Spool>,
    shaping: &ShapingState,
    delivery: &delivery::Delivery,
    (wakeup, clock): (&Arc<Notify>, &SharedClock),
) -> Result<crate::campaigns::Campaigns, ServeError> {
    let campaigns = crate::campaigns::Campaigns::new(
        Arc::clone(spool),
        Arc::clone(&shaping.scheduler),
        delivery.cancellations(),
        Arc::clone(wakeup),
        Arc::clone(clock),
    )
    .with_replication(
        config
            .cluster
            .as_ref()
            .map(|cluster| crate::cluster::Replication::new(Arc::clone(spool), &cluster.node)),
    );
    let loaded = campaigns.load()?;
    if loaded > 0 {
        tracing::info!(campaigns = loaded, "campaign states in force");
    }
    Ok(campaigns)
}

/// The warm-up service; with `[cluster]` it judges from the fleet's tallies and shares its records.
fn load_warmup(
    config: &Config,
    spool: &Arc<Spool>,
    shaping: &ShapingState,
    events: &EventBus,
    (clock, cluster): (&SharedClock, Option<&crate::cluster::Cluster>),
) -> Result<crate::warmup::Warmup, ServeError> {
    let fleet = cluster.map(|cluster| crate::warmup::WarmupFleet {
        cluster: cluster.clone(),
        replication: crate::cluster::Replication::new(Arc::clone(spool), cluster.node()),
    });
    let parts = (
        Arc::clone(spool),
        Arc::clone(&shaping.scheduler),
        events.clone(),
        Arc::clone(clock),
    );
    Ok(crate::warmup::Warmup::load_shared(config, parts, fleet)?)
}

/// The delivery side (driver and scheduler) and what the API reads of it (ready queues, the
/// operator's suspensions, loaded from the spool now).
fn delivery_side(
    config: &Config,
    spool: &Arc<Spool>,
    events: &EventBus,
    (wakeup, tenants): (Arc<Notify>, SharedTenants),
    finisher: Arc<Finisher>,
    clock: SharedClock,
) -> Result<(delivery::Delivery, ShapingState), ServeError> {
    let driver = Arc::new(Notify::new());
    let scheduler = delivery::setup::scheduler(config, events.clone(), Arc::clone(&driver))?;
    let replication = config
        .cluster
        .as_ref()
        .map(|cluster| crate::cluster::Replication::new(Arc::clone(spool), &cluster.node));
    let suspensions = Suspensions::new(
        Arc::clone(spool),
        Arc::clone(&scheduler),
        Arc::clone(&driver),
        Arc::clone(&clock),
    )
    .with_replication(replication);
    let loaded = suspensions.load()?;
    if loaded > 0 {
        tracing::info!(suspensions = loaded, "operator suspensions in force");
    }
    let shared = delivery::setup::Shared {
        spool: Arc::clone(spool),
        events: events.clone(),
        wakeup,
        finisher,
        scheduler: Arc::clone(&scheduler),
        driver,
        clock: Arc::clone(&clock),
        tenants,
    };
    let delivery = delivery::setup::build(config, shared)?;
    let shaping = ShapingState {
        scheduler,
        suspensions,
        clock,
    };
    Ok((delivery, shaping))
}

/// The API tenants (giving the scheduler the rates other nodes change) and the tenant API keys, with
/// their changes journaled for the other nodes when `[cluster]` is set (tenants, SMTP logins, DKIM
/// keys and API keys are shared).
fn accounts(
    registry: TenantRegistry,
    config: &Config,
    (spool, clock): (&Arc<Spool>, &SharedClock),
    shaping: &ShapingState,
) -> Result<(Arc<TenantRegistry>, api::api_keys::ApiKeys), ServeError> {
    let replication = config
        .cluster
        .as_ref()
        .map(|cluster| crate::cluster::Replication::new(Arc::clone(spool), &cluster.node));
    let registry = registry
        .with_replication(replication.clone(), Arc::clone(clock))
        .with_scheduler(Arc::clone(&shaping.scheduler));
    let api_keys =
        api::api_keys::ApiKeys::load(Arc::clone(spool))?.with_replication(replication, Arc::clone(clock));
    Ok((Arc::new(registry), api_keys))
}

/// The sources' blocklist state and, when `[reputation] dnsbl` names zones, its checker (spawned with
/// the other tasks).
fn reputation_checker(
    config: &Config,
    shaping: &ShapingState,
    events: &EventBus,
    metrics: &Arc<Metrics>,
    wakeup: &Arc<Notify>,
) -> Result<(Reputation, Option<Checker>), ServeError> {
    let reputation = Reputation::new();
    let parts = CheckerParts {
        reputation: reputation.clone(),
        scheduler: Arc::clone(&shaping.scheduler),
        events: events.clone(),
        metrics: Arc::clone(metrics),
        clock: Arc::clone(&shaping.clock),
        wakeup: Arc::clone(wakeup),
    };
    let checker = Checker::new(config, parts).map_err(delivery::setup::SetupError::from)?;
    Ok((reputation, checker))
}

/// This node's cluster handle when `[cluster]` is configured (its task is spawned with the others;
/// nothing here waits on Redis). Its queue size is the spool's, as `/healthz` counts it.
fn cluster_handle(
    config: &Config,
    events: &EventBus,
    metrics: &Arc<Metrics>,
    clock: &SharedClock,
    (spool, in_flight): (&Arc<Spool>, &Arc<std::sync::atomic::AtomicUsize>),
) -> Result<Option<crate::cluster::Cluster>, ServeError> {
    let Some(cluster) = &config.cluster else {
        return Ok(None);
    };
    let (spool, in_flight) = (Arc::clone(spool), Arc::clone(in_flight));
    let queue_size = Arc::new(move || {
        let queued = spool.queued_messages() + in_flight.load(std::sync::atomic::Ordering::Relaxed);
        u64::try_from(queued).unwrap_or(u64::MAX)
    });
    let parts = crate::cluster::ClusterParts {
        events: events.clone(),
        metrics: Arc::clone(metrics),
        clock: Arc::clone(clock),
        queue_size,
    };
    Ok(Some(crate::cluster::Cluster::new(cluster, parts)?))
}

/// Starts the HTTP listeners: the control API and the public one.
fn spawn_http(
    api_listener: std::net::TcpListener,
    public_listener: std::net::TcpListener,
    state: ApiState,
    stopped: watch::Receiver<bool>,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<(), ServeError> {
    let state = Arc::new(state);
    let routers = [
        (api_listener, api::router(Arc::clone(&state)), "api"),
        (public_listener, api::public::router(state), "public"),
    ];
    for (listener, router, name) in routers {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tracing::info!(listener = name, address = %listener.local_addr()?, "HTTP listening");
        let mut stopped = stopped.clone();
        tasks.spawn(async move {
            let until_stopped = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            let service = router.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, service)
                .with_graceful_shutdown(until_stopped)
                .await;
        });
    }
    Ok(())
}

/// The event stream: metrics, and the JSON event log when `log.events` is set.
fn event_bus(
    config: &Config,
    metrics: &Arc<Metrics>,
    webhooks: &Arc<crate::webhooks::Webhooks>,
) -> Result<(EventBus, Option<Arc<EventLog>>), ServeError> {
    let event_log = open_event_log(config)?;
    let mut sinks: Vec<Arc<dyn EventSink>> = vec![Arc::clone(metrics) as Arc<dyn EventSink>];
    if let Some(log) = &event_log {
        sinks.push(Arc::clone(log) as Arc<dyn EventSink>);
    }
    sinks.push(Arc::clone(webhooks) as Arc<dyn EventSink>);
    Ok((EventBus::new(sinks), event_log))
}

/// Opens `log.events` when configured.
fn open_event_log(config: &Config) -> Result<Option<Arc<EventLog>>, ServeError> {
    let Some(path) = &config.log.events else {
        return Ok(None);
    };
    let log = EventLog::open(path, config.log.events_max_size.bytes(), config.log.events_keep).map_err(
        |source| ServeError::EventLog {
            path: path.clone(),
            source,
        },
    )?;
    Ok(Some(Arc::new(log)))
}

/// On every SIGHUP until the server stops: reopens the event log (logrotate) and reloads the config
/// file (`[dkim]`, `[[tenant]]`).
async fn on_sighup(log: Option<Arc<EventLog>>, reloader: Arc<Reloader>, mut stopped: watch::Receiver<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install the SIGHUP handler; the event log is rotated by size only");
        return;
    };
    loop {
        tokio::select! {
            _ = hangups.recv() => {
                if let Some(log) = &log {
                    tracing::info!("SIGHUP: reopening the event log");
                    log.reopen();
                }
                log_reload(reloader.reload());
            }
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}

/// Logs the outcome of a reload.
pub fn log_reload(outcome: Result<ReloadReport, ReloadError>) {
    match outcome {
        Ok(report) => tracing::info!(
            config = %report.config,
            tenants = report.tenants,
            dkim_domains = report.dkim_domains,
            restart_needed = ?report.restart_needed,
            "config reloaded"
        ),
        Err(ReloadError::NoConfigFile) => {}
        Err(error) => tracing::error!(%error, "config not reloaded; the running settings are unchanged"),
    }
}

/// Closes the spool once nothing else holds it.
async fn close_spool(spool: Arc<Spool>) -> Result<(), ServeError> {
    // Tasks that end with the server (a blocking API call, a completion being stored) may still hold
    // the spool for a moment: wait for them (bounded), so that it is closed and flushed before
    // `serve` returns and a new server can open it.
    for _ in 0..500 {
        if Arc::strong_count(&spool) == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    match Arc::try_unwrap(spool) {
        Ok(spool) => {
            let closed = tokio::task::spawn_blocking(move || spool.close())
                .await
                .map_err(|join| ServeError::Io(std::io::Error::other(join)))?;
            // Every acknowledged message was synced before its 250, so a failing final flush (e.g.
            // the disk is still full) loses nothing: report it, and still stop as asked.
            if let Err(error) = closed {
                tracing::error!(%error, "closing the spool failed; acknowledged messages were already synced");
            }
        }
        Err(_) => tracing::warn!("spool still referenced at shutdown; it closes when dropped"),
    }
    Ok(())
}

/// The DKIM signer and unsubscribe-link writer of reception. Links default to the HTTP listener's
/// address.
fn finisher(
    config: &Config,
    listeners: &Listeners,
    tokens: Arc<UnsubscribeTokens>,
) -> Result<Finisher, ServeError> {
    let base_url = match &config.unsubscribe.base_url {
        Some(base) => base.clone(),
        None => format!("http://{}", listeners.public.local_addr()?),
    };
    let links = UnsubscribeLinks {
        base_url,
        mailto: config.unsubscribe.mailto.clone(),
    };
    let store = Arc::new(KeyStore::new(&config.dkim.key_dir));
    Ok(Finisher::new(store, config.dkim.clone(), tokens, links))
}

/// What reception shares with the rest of the server.
struct ReceptionServices {
    /// The event stream.
    events: EventBus,
    /// Wakes the delivery dispatcher.
    wakeup: Arc<Notify>,
    /// Unsubscribe links and DKIM signing.
    finisher: Arc<Finisher>,
    /// SMTP AUTH accounts (replaced on reload).
    tenants: SharedTenants,
    /// The time of acceptance.
    clock: SharedClock,
    /// Cancelled campaigns (their new mail is refused).
    cancellations: Arc<delivery::Cancellations>,
    /// With `[cluster]`: the fleet's counts for the daily quota.
    cluster: Option<crate::cluster::Cluster>,
}

/// Builds the SMTP server from config.
fn smtp_server(
    config: &Config,
    tls: Option<tokio_rustls::TlsAcceptor>,
    spool: &Arc<Spool>,
    metrics: &Arc<Metrics>,
    services: ReceptionServices,
) -> Arc<SmtpServer> {
    let ReceptionServices {
        events,
        wakeup,
        finisher,
        tenants,
        clock,
        cancellations,
        cluster,
    } = services;
    let smtp = &config.smtp;
    let rule = AuthThrottleRule {
        limit: smtp.auth_failure_limit,
        window: smtp.auth_failure_window.get(),
        lockout: smtp.auth_lockout.get(),
    };
    let shared = Arc::new(SessionShared {
        params: SessionParams {
            hostname: smtp.hostname.clone(),
            max_message_size: smtp.max_message_size.bytes() as usize,
            max_recipients: smtp.max_recipients,
            max_errors: smtp.max_errors,
            tls_available: tls.is_some(),
        },
        ids: IdGenerator::new(),
        gauge: Arc::new(ReceptionGauge {
            spool: Arc::clone(spool),
            clock: Arc::clone(&clock),
            cancellations,
            cluster,
        }) as Arc<dyn SpoolGauge>,
    });
    let context = Arc::new(ConnectionContext {
        tenants,
        throttle: Arc::new(Mutex::new(AuthThrottle::new(rule, MAX_THROTTLED_CLIENTS))),
        spool: Arc::clone(spool),
        finisher,
        tls,
        events,
        delivery_wakeup: wakeup,
        metrics: Arc::clone(metrics),
        command_timeout: smtp.command_timeout.get(),
        data_timeout: smtp.data_timeout.get(),
        clock,
    });
    Arc::new(SmtpServer {
        context,
        shared,
        limits: ConnectionLimits::new(smtp.max_connections, smtp.max_connections_per_ip),
        relay_networks: smtp.relay_networks.clone(),
        auth_cleartext_networks: smtp.auth_cleartext_networks.clone(),
        shutdown_grace: smtp.shutdown_grace.get(),
    })
}
