//! Shaping accuracy: many recipient domains on fewer sites, two egress sources, every (source, site)
//! lane limited to one rate and kept busy; the rate each lane really delivered, counted at the
//! receiving side over a steady window, against the configured rate.
//!
//! Set-up: a loopback DNS world (`dnsworld`: domain n → MX `mxS` with S = n mod sites → 127.0.1.(S+1)),
//! one counting SMTP server per site address on one port (`sitesink`), and penguin-mta with
//! `delivery.port` = that port, `dns.nameservers` = the DNS server, `[shaping] max_message_rate` and
//! two `[[source]]`s (127.0.0.2 and 127.0.0.3, both in the default pool). The bench's own client
//! injects enough mail (round-robin over the domains) for every lane to stay busy beyond the window,
//! with delivery running. The window starts `skip` after the first delivery anywhere.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::ensure;

use crate::dnsworld::{DnsWorld, WorldShape};
use crate::engine::Engine;
use crate::load::{self, LoadSpec};
use crate::scenario::{RUN_LIMIT, Setup};
use crate::sitesink::{Arrival, SiteSinks};

/// The egress sources of the scenario (both in the default pool, weight 1).
const SOURCES: [(&str, Ipv4Addr); 2] = [
    ("ip2", Ipv4Addr::new(127, 0, 0, 2)),
    ("ip3", Ipv4Addr::new(127, 0, 0, 3)),
];

/// Payload bytes of each injected message (small: the scenario measures pacing, not bandwidth).
const MESSAGE_SIZE: usize = 1024;

/// What the accuracy scenario does.
#[derive(Clone, Copy, Debug)]
pub struct AccuracyPlan {
    /// Recipient domains.
    pub domains: usize,
    /// Sites they are hosted on.
    pub sites: usize,
    /// `[shaping] max_message_rate` per lane, messages per second.
    pub rate: u32,
    /// Time after the first delivery that is not measured (start-up).
    pub skip: Duration,
    /// The measured window.
    pub window: Duration,
}

impl AccuracyPlan {
    /// The full run's plan: 1,000 domains on 50 sites, 20/s per lane, 10 s skipped, 60 s measured.
    pub fn full() -> AccuracyPlan {
        AccuracyPlan {
            domains: 1000,
            sites: 50,
            rate: 20,
            skip: Duration::from_secs(10),
            window: Duration::from_secs(60),
        }
    }

    /// The smoke run's plan: 50 domains on 5 sites, 2 s skipped, 5 s measured.
    pub fn quick() -> AccuracyPlan {
        AccuracyPlan {
            domains: 50,
            sites: 5,
            rate: 20,
            skip: Duration::from_secs(2),
            window: Duration::from_secs(5),
        }
    }

    /// Lanes: every source to every site.
    pub fn lanes(&self) -> usize {
        SOURCES.len() * self.sites
    }

    /// Messages to inject: what every lane can send during skip + window, plus a quarter and five
    /// seconds more, so that no lane runs dry before the window ends.
    pub fn messages(&self) -> usize {
        let per_lane_second = self.lanes() * self.rate as usize;
        let seconds = (self.skip + self.window).as_secs_f64();
        (per_lane_second as f64 * (seconds * 1.25 + 5.0)).ceil() as usize
    }
}

/// What the accuracy scenario measured.
#[derive(Clone, Debug)]
pub struct Accuracy {
    /// The plan it ran.
    pub plan: AccuracyPlan,
    /// Messages injected.
    pub messages: usize,
    /// How long the injection took (20 sessions of the bench's client, delivery running).
    pub injection: Duration,
    /// Delivered rate of every lane in the window, messages per second, by (source, site) address.
    pub rates: BTreeMap<(IpAddr, IpAddr), f64>,
    /// Lanes that still had mail queued at the end of the window (all of them, or the figure is not
    /// a measurement of a busy lane).
    pub backlogged: usize,
}

impl Accuracy {
    /// Relative error of every lane: delivered / configured − 1 (lanes never seen count as −1).
    fn errors(&self) -> Vec<f64> {
        let configured = f64::from(self.plan.rate);
        let mut errors: Vec<f64> = self.rates.values().map(|rate| rate / configured - 1.0).collect();
        errors.resize(self.plan.lanes().max(errors.len()), -1.0);
        errors
    }

    /// The error of largest magnitude (signed).
    pub fn worst_error(&self) -> f64 {
        self.errors()
            .into_iter()
            .max_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap_or(-1.0)
    }

    /// The mean of the errors' magnitudes.
    pub fn mean_abs_error(&self) -> f64 {
        let errors = self.errors();
        errors.iter().map(|e| e.abs()).sum::<f64>() / errors.len().max(1) as f64
    }

    /// The mean signed error (negative: the lanes deliver less than configured on average).
    pub fn mean_error(&self) -> f64 {
        let errors = self.errors();
        errors.iter().sum::<f64>() / errors.len().max(1) as f64
    }

    /// Slowest and fastest lane, messages per second.
    pub fn rate_range(&self) -> (f64, f64) {
        let min = self.rates.values().copied().fold(f64::INFINITY, f64::min);
        let max = self.rates.values().copied().fold(0.0, f64::max);
        (
            if self.rates.len() < self.plan.lanes() {
                0.0
            } else {
                min
            },
            max,
        )
    }
}

/// Runs the scenario.
pub fn measure(setup: &Setup<'_>, plan: AccuracyPlan) -> anyhow::Result<Accuracy> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let shape = WorldShape {
        label: "bench-sites",
        domains: plan.domains,
        sites: plan.sites,
        distinct_addresses: true,
    };
    let world = runtime.block_on(DnsWorld::start(shape))?;
    let sinks = SiteSinks::start(&runtime, &world.site_addresses)?;
    let engine = Engine::start_with(
        setup.binary,
        setup.work,
        &config(plan, sinks.port, world.address()),
        None,
    )?;
    let messages = plan.messages();
    let spec = LoadSpec {
        address: engine.smtp,
        sessions: setup.sessions,
        messages,
        size: MESSAGE_SIZE,
        domains: world.domains.clone().into(),
    };
    let started = Instant::now();
    let injected = runtime.block_on(load::run(&spec, RUN_LIMIT))?;
    ensure!(
        injected.accepted == messages,
        "{} of {messages} messages accepted",
        injected.accepted
    );
    let injection = started.elapsed();
    let first = first_arrival(&sinks, Duration::from_secs(60))?;
    let (start, end) = (first + plan.skip, first + plan.skip + plan.window);
    let wait = (sinks.epoch + end + Duration::from_millis(200)).saturating_duration_since(Instant::now());
    std::thread::sleep(wait.min(RUN_LIMIT));
    let backlogged = engine
        .ready_queues()?
        .iter()
        .filter(|queue| queue.queued > 0)
        .count();
    drop(engine);
    let rates = lane_rates(&sinks.arrivals(), start, end);
    Ok(Accuracy {
        plan,
        messages,
        injection,
        rates,
        backlogged,
    })
}

/// The engine's config: the sites' port, the DNS world, the rate, the two sources.
fn config(plan: AccuracyPlan, port: u16, dns: std::net::SocketAddr) -> String {
    let mut config = format!(
        "[delivery]\nport = {port}\n[dns]\nnameservers = [\"{dns}\"]\n[shaping]\nmax_message_rate = \"{}/s\"\n",
        plan.rate
    );
    for (name, ip) in SOURCES {
        config.push_str(&format!("[[source]]\nname = \"{name}\"\nip = \"{ip}\"\n"));
    }
    config
}

/// When the first message arrived at any site (waiting at most `limit` for it).
fn first_arrival(sinks: &SiteSinks, limit: Duration) -> anyhow::Result<Duration> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(first) = sinks.arrivals().iter().map(|a| a.at).min() {
            return Ok(first);
        }
        ensure!(
            Instant::now() < deadline,
            "no site received a message within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Messages per second of every (source, site) pair that delivered in [`start`, `end`).
fn lane_rates(arrivals: &[Arrival], start: Duration, end: Duration) -> BTreeMap<(IpAddr, IpAddr), f64> {
    let mut counts: BTreeMap<(IpAddr, IpAddr), u64> = BTreeMap::new();
    for arrival in arrivals {
        let lane = counts.entry((arrival.source, arrival.site)).or_default();
        if arrival.at >= start && arrival.at < end {
            *lane += 1;
        }
    }
    let seconds = end.saturating_sub(start).as_secs_f64().max(1e-9);
    counts
        .into_iter()
        .map(|(lane, count)| (lane, count as f64 / seconds))
        .collect()
}

/// The figures in one line for the progress output.
pub fn summary(accuracy: &Accuracy) -> String {
    let (min, max) = accuracy.rate_range();
    format!(
        "shaping accuracy: {} lanes at {}/s: worst error {:+.2}%, mean |error| {:.2}%, lanes {min:.2}–{max:.2} msg/s, \
         {} of {} lanes still backlogged at the window's end; {} messages injected in {:.1} s",
        accuracy.plan.lanes(),
        accuracy.plan.rate,
        accuracy.worst_error() * 100.0,
        accuracy.mean_abs_error() * 100.0,
        accuracy.backlogged,
        accuracy.plan.lanes(),
        accuracy.messages,
        accuracy.injection.as_secs_f64()
    )
}

/// Context for errors of this scenario.
pub fn context(plan: AccuracyPlan) -> String {
    format!(
        "shaping accuracy scenario ({} domains on {} sites, {}/s per lane)",
        plan.domains, plan.sites, plan.rate
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(source: u8, site: u8, ms: u64) -> Arrival {
        Arrival {
            source: IpAddr::V4(Ipv4Addr::new(127, 0, 0, source)),
            site: IpAddr::V4(Ipv4Addr::new(127, 0, 1, site)),
            at: Duration::from_millis(ms),
        }
    }

    #[test]
    fn counts_each_lane_inside_the_window_only() {
        let arrivals = [
            at(2, 1, 500),
            at(2, 1, 1000),
            at(2, 1, 1500),
            at(2, 1, 3000),
            at(3, 1, 2999),
            at(3, 2, 100),
        ];
        let rates = lane_rates(&arrivals, Duration::from_secs(1), Duration::from_secs(3));
        let lane = |source, site| rates[&(at(source, site, 0).source, at(source, site, 0).site)];
        assert_eq!(lane(2, 1), 1.0);
        assert_eq!(lane(3, 1), 0.5);
        assert_eq!(lane(3, 2), 0.0);
    }

    #[test]
    fn errors_count_missing_lanes_as_minus_one() {
        let plan = AccuracyPlan {
            sites: 2,
            ..AccuracyPlan::quick()
        };
        let mut rates = BTreeMap::new();
        rates.insert((at(2, 1, 0).source, at(2, 1, 0).site), 21.0);
        rates.insert((at(3, 1, 0).source, at(3, 1, 0).site), 19.5);
        rates.insert((at(2, 2, 0).source, at(2, 2, 0).site), 20.0);
        let accuracy = Accuracy {
            plan,
            messages: 0,
            injection: Duration::ZERO,
            rates,
            backlogged: 4,
        };
        assert_eq!(accuracy.worst_error(), -1.0);
        assert!((accuracy.mean_abs_error() - (0.05 + 0.025 + 0.0 + 1.0) / 4.0).abs() < 1e-12);
        assert_eq!(accuracy.rate_range(), (0.0, 21.0));
        assert!(plan.messages() >= plan.lanes() * 20 * 7);
    }
}
