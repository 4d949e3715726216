//! The `[cluster]` part of the wiring: what the scheduler and the delivery share with the other nodes
//! (switched on before anything is sent) and the tasks that talk to Redis (spawned with the others).
//! Without `[cluster]` none of it exists.

use std::sync::{Arc, Mutex};

use penguin_config::Config;
use penguin_queue::Spool;
use tokio::sync::{Notify, watch};

use crate::api::ShapingState;
use crate::cluster::{self, ApplyChange, Cluster};
use crate::delivery::Delivery;
use crate::delivery::scheduler::Scheduler;
use crate::smtp::auth::SharedTenants;
use crate::unsubscribe::UnsubscribeTokens;

/// The wakes of the tasks that serve the scheduler's requests to Redis.
pub(super) struct FleetWakes {
    /// Slots of the shared rates and claims of the warm-up caps (`cluster::run_slots`).
    slots: Arc<Notify>,
    /// The closed loop's rate changes (`cluster::run_adaptive_sync`).
    rates: Arc<Notify>,
}

/// What the cluster's tasks work on.
pub(super) struct FleetParts {
    /// The scheduler (slots, claims, rate changes).
    pub scheduler: Arc<Mutex<Scheduler>>,
    /// The spool (journals, usage and warm-up counters, suppression lists).
    pub spool: Arc<Spool>,
    /// The unsubscribe keys (the fleet's is adopted).
    pub tokens: Arc<UnsubscribeTokens>,
    /// The tenants (whose daily quota needs the others' counts).
    pub tenants: SharedTenants,
    /// Who applies the other nodes' control records.
    pub appliers: Vec<Arc<dyn ApplyChange>>,
    /// The sources' names (whose warm-up tallies are pushed).
    pub sources: Vec<String>,
}

/// Shares the scheduler's rates, warm-up caps and closed-loop changes and the delivery's connection
/// caps with the fleet: the slots, claims, rate changes and leases then come from Redis.
pub(super) fn share_limits(
    cluster: &Cluster,
    config: &Config,
    shaping: &ShapingState,
    delivery: &Delivery,
) -> FleetWakes {
    let wakes = FleetWakes {
        slots: Arc::new(Notify::new()),
        rates: Arc::new(Notify::new()),
    };
    {
        let mut scheduler = shaping.lock();
        scheduler.enable_shared_limits(1, Arc::clone(&wakes.slots));
        scheduler.enable_shared_warmup(Arc::clone(&wakes.slots));
        scheduler.enable_fleet_rates(cluster.node(), Arc::clone(&wakes.rates));
    }
    if let Some(section) = &config.cluster {
        // Each connection holds leases of the shared connection caps (cluster::leases).
        delivery.set_leases(cluster::Leases::new(cluster.clone(), section.lease_ttl.get()));
    }
    wakes
}

/// Starts the cluster's tasks (each stops when `stopped` turns true).
pub(super) fn spawn_tasks(
    cluster: Cluster,
    wakes: FleetWakes,
    parts: FleetParts,
    stopped: &watch::Receiver<bool>,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let FleetParts {
        scheduler,
        spool,
        tokens,
        tenants,
        appliers,
        sources,
    } = parts;
    let scheduler_of = || Arc::clone(&scheduler);
    tasks.spawn(cluster::run_slots(
        cluster.clone(),
        scheduler_of(),
        wakes.slots,
        stopped.clone(),
    ));
    tasks.spawn(cluster::run_adaptive_sync(
        cluster.clone(),
        scheduler_of(),
        wakes.rates,
        stopped.clone(),
    ));
    // The other nodes' counts for the daily quota.
    tasks.spawn(cluster::run_quota_refresh(
        cluster.clone(),
        tenants,
        stopped.clone(),
    ));
    tasks.spawn(cluster::run_control_sync(
        cluster.clone(),
        Arc::clone(&spool),
        appliers,
        stopped.clone(),
    ));
    tasks.spawn(cluster::run_suppression_sync(
        cluster.clone(),
        Arc::clone(&spool),
        tokens,
        stopped.clone(),
    ));
    // This node's warm-up tallies (the fleet's judgement) and usage counters (the fleet's usage).
    tasks.spawn(cluster::run_warm_tally_push(
        cluster.clone(),
        Arc::clone(&spool),
        sources,
        stopped.clone(),
    ));
    tasks.spawn(cluster::run_usage_push(cluster.clone(), spool, stopped.clone()));
    tasks.spawn(cluster.run(stopped.clone()));
}
