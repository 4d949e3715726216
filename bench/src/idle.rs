//! Idle cost of held ready queues: penguin-mta with thousands of ready queues, one queued message each,
//! all held by an operator suspension; the CPU the engine uses while nothing can be sent.
//!
//! Set-up: a loopback DNS world where every recipient domain has its own MX host name (so every domain
//! is its own site and ready queue), all resolving to 127.0.2.1, where nothing listens; penguin-mta
//! with `dns.nameservers` = that server. Before any mail: `POST /v1/suspensions`
//! `{"source":"default","duration":"1h"}`. Then one message per domain over SMTP, a wait until
//! `GET /v1/shaping` shows every queue with one item queued (and suspended), a second to settle, and
//! the engine's CPU time (user + system, /proc) over the measured period.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure};

use crate::dkim::metric_sum;
use crate::dnsworld::{DnsWorld, WorldShape};
use crate::engine::{Engine, ReadyQueue};
use crate::load::{self, LoadSpec};
use crate::postfix::free_address;
use crate::scenario::{RUN_LIMIT, Setup};

/// Longest wait for every queue to show its held message.
const HOLD_LIMIT: Duration = Duration::from_secs(300);

/// What the idle scenario does.
#[derive(Clone, Copy, Debug)]
pub struct IdlePlan {
    /// Ready queues (domains = sites), one message each.
    pub queues: usize,
    /// How long the CPU is measured.
    pub period: Duration,
}

impl IdlePlan {
    /// The full run's plan: 10,000 queues, 30 s.
    pub fn full() -> IdlePlan {
        IdlePlan {
            queues: 10_000,
            period: Duration::from_secs(30),
        }
    }

    /// The smoke run's plan: 2,000 queues, 10 s (filling 10,000 queues takes a debug build most of a
    /// minute).
    pub fn quick() -> IdlePlan {
        IdlePlan {
            queues: 2_000,
            period: Duration::from_secs(10),
        }
    }
}

/// What the idle scenario measured.
#[derive(Clone, Debug)]
pub struct Idle {
    /// The plan it ran.
    pub plan: IdlePlan,
    /// Injection of the messages (one per domain, the bench's client, 20 sessions).
    pub injection: Duration,
    /// From the first injected message until every queue showed its held message.
    pub filling: Duration,
    /// CPU seconds of the engine from its start until every queue held its message (reception, DNS,
    /// routing): shows that the meter counts.
    pub filling_cpu: f64,
    /// Queues holding one message at the end of the measurement.
    pub held: usize,
    /// CPU seconds of the engine in the measured period.
    pub cpu_seconds: f64,
    /// Wall time of the measured period.
    pub wall: Duration,
}

impl Idle {
    /// CPU used, in percent of one core.
    pub fn percent_of_core(&self) -> f64 {
        self.cpu_seconds / self.wall.as_secs_f64().max(1e-9) * 100.0
    }
}

/// Runs the scenario.
pub fn measure(setup: &Setup<'_>, plan: IdlePlan) -> anyhow::Result<Idle> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let shape = WorldShape {
        label: "bench-idle",
        domains: plan.queues,
        sites: plan.queues,
        distinct_addresses: false,
    };
    let world = runtime.block_on(DnsWorld::start(shape))?;
    // Nothing listens on 127.0.2.1 at any port; the port of a moment-ago free 127.0.0.1 socket will do.
    let port = free_address()?.port();
    let config = format!(
        "[delivery]\nport = {port}\n[dns]\nnameservers = [\"{}\"]\n",
        world.address()
    );
    let engine = Engine::start_with(setup.binary, setup.work, &config, None)?;
    engine.http(
        "POST",
        "/v1/suspensions",
        Some(r#"{"source":"default","duration":"1h","reason":"penguin-bench: idle cost of held queues"}"#),
        201,
    )?;
    let spec = LoadSpec {
        address: engine.smtp,
        sessions: setup.sessions,
        messages: plan.queues,
        size: 1024,
        domains: world.domains.clone().into(),
    };
    let started = Instant::now();
    let injected = runtime.block_on(load::run(&spec, RUN_LIMIT))?;
    ensure!(
        injected.accepted == plan.queues,
        "{} of {} messages accepted",
        injected.accepted,
        plan.queues
    );
    let injection = started.elapsed();
    wait_until_held(&engine, plan.queues)?;
    let filling = started.elapsed();
    let filling_cpu = engine.cpu_seconds()?;
    std::thread::sleep(Duration::from_secs(1));
    let (cpu_before, wall_before) = (engine.cpu_seconds()?, Instant::now());
    std::thread::sleep(plan.period);
    let (cpu_after, wall) = (engine.cpu_seconds()?, wall_before.elapsed());
    let held = held(&engine.ready_queues()?);
    ensure!(
        held == plan.queues,
        "after the measurement {held} of {} queues still hold their message",
        plan.queues
    );
    Ok(Idle {
        plan,
        injection,
        filling,
        filling_cpu,
        held,
        cpu_seconds: cpu_after - cpu_before,
        wall,
    })
}

/// Queues holding exactly one suspended message.
fn held(queues: &[ReadyQueue]) -> usize {
    queues
        .iter()
        .filter(|queue| queue.queued == 1 && queue.suspended)
        .count()
}

/// Polls `GET /metrics` (cheap; ten times a second, at most [`HOLD_LIMIT`]) until the shaping gauges
/// count `queues` items queued and `queues` suspended queues, then checks with `GET /v1/shaping` that
/// every queue holds exactly one.
fn wait_until_held(engine: &Engine, queues: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let metrics = engine.metrics()?;
        let queued = metric_sum(&metrics, "penguin_shaping_queued", "");
        let suspended = metric_sum(&metrics, "penguin_shaping_suspended_queues", "");
        if queued as usize == queues && suspended as usize == queues {
            break;
        }
        if started.elapsed() > HOLD_LIMIT {
            bail!(
                "after {HOLD_LIMIT:?} the engine counts {queued} items queued in {suspended} suspended ready \
                 queues, not {queues}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let view = engine.ready_queues()?;
    let count = held(&view);
    ensure!(
        count == queues && view.len() == queues,
        "{count} of {queues} ready queues hold their message ({} queues shown)",
        view.len()
    );
    Ok(())
}

/// The figures in one line for the progress output.
pub fn summary(idle: &Idle) -> String {
    format!(
        "idle: {} of {} ready queues held: {:.2}% of a core over {:.0} s ({:.3} CPU-s); injected in {:.1} s, \
         all held after {:.1} s, having used {:.2} CPU-s until then",
        idle.held,
        idle.plan.queues,
        idle.percent_of_core(),
        idle.wall.as_secs_f64(),
        idle.cpu_seconds,
        idle.injection.as_secs_f64(),
        idle.filling.as_secs_f64(),
        idle.filling_cpu
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_of_one_core() {
        let idle = Idle {
            plan: IdlePlan::full(),
            injection: Duration::ZERO,
            filling: Duration::ZERO,
            filling_cpu: 1.0,
            held: 10_000,
            cpu_seconds: 0.3,
            wall: Duration::from_secs(30),
        };
        assert!((idle.percent_of_core() - 1.0).abs() < 1e-9);
    }
}
