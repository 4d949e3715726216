//! The comparison run: every workload through the ceiling, Postfix and penguin-mta (the headline
//! workload also through penguin-mta DKIM-signing with RSA-2048 and Ed25519), interleaved over rounds so
//! each ratio compares figures taken seconds apart, with one core's `openssl speed` signing rates
//! measured in every round (the headline workload also through penguin-mta with shaping configured and
//! receiving only); then latency, the shaping accuracy and idle scenarios, and scale; then the report.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;

use crate::RunArgs;
use crate::accuracy::{self, AccuracyPlan};
use crate::dkim::{self, KeySet, Signing};
use crate::engine;
use crate::idle::{self, IdlePlan};
use crate::openssl::{self, Crypto, Rates};
use crate::postfix;
use crate::report::{self, Figure, Progress, RunInfo};
use crate::scenario::{self, Measurement, Mta, Scale, Setup, Workload};

/// The workloads of a full run; the first is the headline (and the only one of `--quick`).
const WORKLOADS: [Workload; 4] = [
    Workload {
        label: "5 KiB, reuse, 1 rcpt",
        size: 5120,
        reuse: true,
        recipients: 1,
    },
    Workload {
        label: "5 KiB, connection per message, 1 rcpt",
        size: 5120,
        reuse: false,
        recipients: 1,
    },
    Workload {
        label: "100 KiB, reuse, 1 rcpt",
        size: 102_400,
        reuse: true,
        recipients: 1,
    },
    Workload {
        label: "5 KiB, reuse, 5 rcpts",
        size: 5120,
        reuse: true,
        recipients: 5,
    },
];

/// The MTAs every workload runs through, in the order of each round.
const MTAS: [Mta; 3] = [Mta::Ceiling, Mta::Postfix, Mta::Penguin];

/// What a run does, derived from the arguments.
struct Plan {
    /// Workloads to run.
    workloads: Vec<Workload>,
    /// Rounds.
    rounds: usize,
    /// Messages per run of the ceiling and penguin-mta for a 5 KiB workload.
    messages: usize,
    /// Messages of each latency run.
    latency_messages: usize,
    /// Messages of the scale scenario (0 = none).
    scale_messages: usize,
    /// The DKIM-signing scenarios of the headline workload.
    signings: Vec<Signing>,
    /// What `openssl speed` measures in every round.
    crypto: Vec<Crypto>,
    /// `openssl speed -seconds`.
    speed_seconds: u32,
    /// The MTAs whose time-to-250 is measured.
    latency_mtas: Vec<Mta>,
    /// The shaping scenarios that are not a workload.
    shaping: ShapingPlan,
}

impl Plan {
    /// The plan of these arguments.
    fn new(args: &RunArgs) -> Plan {
        if args.quick {
            return Plan {
                workloads: vec![WORKLOADS[0]],
                rounds: 1,
                messages: 2000,
                latency_messages: 500,
                scale_messages: 0,
                signings: vec![Signing::Rsa],
                crypto: vec![Crypto::Rsa2048],
                speed_seconds: 1,
                latency_mtas: vec![Mta::Postfix, Mta::Penguin],
                shaping: ShapingPlan {
                    accuracy: AccuracyPlan::quick(),
                    idle: IdlePlan::quick(),
                },
            };
        }
        let signings = vec![Signing::Rsa, Signing::Ed25519];
        let mut latency_mtas = vec![Mta::Postfix, Mta::Penguin];
        latency_mtas.extend(signings.iter().map(|signing| Mta::PenguinDkim(*signing)));
        Plan {
            workloads: WORKLOADS.to_vec(),
            rounds: args.rounds.max(1),
            messages: args.messages.max(100),
            latency_messages: (args.messages / 4).max(100),
            scale_messages: args.scale_messages,
            signings,
            crypto: vec![Crypto::Rsa2048, Crypto::Ed25519],
            speed_seconds: 3,
            latency_mtas,
            shaping: ShapingPlan {
                accuracy: AccuracyPlan::full(),
                idle: IdlePlan::full(),
            },
        }
    }

    /// The MTAs of workload `index` in the order of each round: [`MTAS`], then for the headline
    /// workload penguin-mta with shaping configured, penguin-mta receiving only, and the DKIM-signing
    /// penguin-mta.
    fn mtas(&self, index: usize) -> Vec<Mta> {
        let mut mtas = MTAS.to_vec();
        if index == 0 {
            mtas.extend([Mta::PenguinShaping, Mta::PenguinReception]);
            mtas.extend(self.signings.iter().map(|signing| Mta::PenguinDkim(*signing)));
        }
        mtas
    }

    /// Messages of one run: fewer for big messages (same bytes), a quarter for Postfix (it is slower).
    fn count(&self, mta: Mta, workload: Workload) -> usize {
        let by_size = (self.messages * 5120 / workload.size.max(1)).max(100);
        if mta == Mta::Postfix {
            (by_size / 4).max(100)
        } else {
            by_size
        }
    }

    /// Progress steps.
    fn steps(&self) -> usize {
        let runs: usize = (0..self.workloads.len())
            .map(|index| self.mtas(index).len())
            .sum();
        self.signings.len()
            + self.rounds * (runs + self.crypto.len())
            + self.latency_mtas.len()
            + 2
            + usize::from(self.scale_messages > 0)
    }
}

/// Runs the comparison and reports it.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    postfix::check_tools()?;
    openssl::check_tool()?;
    let binary = match &args.engine {
        Some(path) => path.clone(),
        None => engine::default_binary()?,
    };
    let plan = Plan::new(&args);
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut info = RunInfo::collect_with_spool(command, &args.spool_dir);
    // Other work on the machine distorts every figure: say how busy it was when the run began.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        info.extra
            .push(("load average at start (1, 5, 15 min)".into(), load.join(" ")));
    }
    let keys = KeySet::generate(&args.spool_dir, &plan.signings)?;
    let setup = Setup {
        binary: &binary,
        work: &args.spool_dir,
        sessions: args.sessions,
        keys: &keys,
    };
    let progress = Progress::new(plan.steps());
    if binary.components().any(|part| part.as_os_str() == "debug") {
        progress.println("note: penguin-mta is a debug build; its figures say nothing about its speed");
        info.extra.push((
            "penguin-mta build".into(),
            "debug (figures not meaningful)".into(),
        ));
    }
    let probes = probe_signing(&plan, &setup, &progress)?;
    let samples = measure_rounds(&plan, &setup, &progress)?;
    let latencies = measure_latencies(&plan, &setup, &progress)?;
    let shaping = measure_shaping(&plan.shaping, &setup, &progress)?;
    let scale = match plan.scale_messages {
        0 => None,
        messages => {
            progress.step(format!("scale: {messages} queued messages, restart"));
            Some(scenario::scale(&setup, messages).context("scale scenario")?)
        }
    };
    progress.finish();
    let dkim = DkimFacts {
        speeds: samples
            .speeds
            .iter()
            .filter_map(|(crypto, rates)| Some((*crypto, median_rates(rates)?)))
            .collect(),
        seconds: plan.speed_seconds,
        rounds: plan.rounds,
        probes,
    };
    let figures = figures(&plan, &samples.runs, &latencies);
    let table = report::render_table(&figures);
    let extra = extra_markdown(&figures, scale.as_ref(), &dkim, &shaping, &mut info);
    println!("\n{table}\n{extra}");
    write_outputs(&args, &info, &figures, &table, &extra)
}

/// `penguin-bench shaping`: the accuracy and idle scenarios alone, printed.
pub fn shaping_only(
    quick: bool,
    sessions: usize,
    engine: Option<PathBuf>,
    spool_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let binary = match engine {
        Some(path) => path,
        None => engine::default_binary()?,
    };
    let keys = KeySet::generate(spool_dir, &[])?;
    let setup = Setup {
        binary: &binary,
        work: spool_dir,
        sessions,
        keys: &keys,
    };
    let (accuracy, idle) = if quick {
        (AccuracyPlan::quick(), IdlePlan::quick())
    } else {
        (AccuracyPlan::full(), IdlePlan::full())
    };
    let progress = Progress::new(2);
    let plan = ShapingPlan { accuracy, idle };
    measure_shaping(&plan, &setup, &progress)?;
    progress.finish();
    Ok(())
}

/// Before the rounds: one probe message per signing algorithm, its signature verified (fails the run
/// at once when penguin-mta does not sign as configured).
fn probe_signing(
    plan: &Plan,
    setup: &Setup<'_>,
    progress: &Progress,
) -> anyhow::Result<Vec<(Signing, String)>> {
    let mut probes = Vec::new();
    for signing in &plan.signings {
        progress.step(format!(
            "DKIM {}: probe message, signature check",
            signing.label()
        ));
        let keys = setup.keys.get(*signing)?;
        let verified = dkim::probe(setup, keys, WORKLOADS[0])
            .with_context(|| format!("DKIM {} probe", signing.label()))?;
        progress.println(format!("DKIM {}: {verified}", signing.label()));
        probes.push((*signing, verified));
    }
    Ok(probes)
}

/// What the rounds measured.
#[derive(Default)]
struct Samples {
    /// Every run of each (workload index, MTA).
    runs: BTreeMap<(usize, Mta), Vec<Measurement>>,
    /// Every `openssl speed` result of each algorithm.
    speeds: BTreeMap<Crypto, Vec<Rates>>,
}

/// Every (workload, MTA) run of every round, interleaved, and one core's signing speed per round.
fn measure_rounds(plan: &Plan, setup: &Setup<'_>, progress: &Progress) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    for round in 1..=plan.rounds {
        for (index, workload) in plan.workloads.iter().enumerate() {
            for mta in plan.mtas(index) {
                let messages = plan.count(mta, *workload);
                progress.step(format!(
                    "round {round}/{}: {} — {} × {messages}",
                    plan.rounds,
                    mta.kind(),
                    workload.label
                ));
                let measured = scenario::measure(setup, mta, *workload, messages)
                    .with_context(|| format!("{} with {} (round {round})", mta.kind(), workload.label))?;
                progress.println(format!(
                    "round {round}: {:<20} {:<40} {:>8.0} msg/s  cpu {}",
                    mta.kind(),
                    workload.label,
                    measured.rate,
                    measured
                        .cpu_per_1000
                        .map_or("—".to_string(), |cpu| format!("{cpu:.3} s/1000"))
                ));
                samples.runs.entry((index, mta)).or_default().push(measured);
            }
        }
        for crypto in &plan.crypto {
            progress.step(format!(
                "round {round}/{}: openssl speed -seconds {} {}",
                plan.rounds,
                plan.speed_seconds,
                crypto.arg()
            ));
            let rates = openssl::speed(*crypto, plan.speed_seconds)?;
            progress.println(format!(
                "round {round}: openssl speed {:<8} {:>8.0} sign/s  {:>8.0} verify/s (one core)",
                crypto.arg(),
                rates.sign,
                rates.verify
            ));
            samples.speeds.entry(*crypto).or_default().push(rates);
        }
    }
    Ok(samples)
}

/// The sizes of the shaping scenarios that are not a workload.
struct ShapingPlan {
    /// The accuracy scenario.
    accuracy: AccuracyPlan,
    /// The idle scenario.
    idle: IdlePlan,
}

/// The shaping scenarios that are not a workload: accuracy of the rate limits, idle cost of held
/// queues.
fn measure_shaping(
    plan: &ShapingPlan,
    setup: &Setup<'_>,
    progress: &Progress,
) -> anyhow::Result<ShapingFacts> {
    let lanes = plan.accuracy.lanes();
    progress.step(format!(
        "shaping accuracy: {} domains on {} sites, {lanes} lanes at {}/s, {} s window",
        plan.accuracy.domains,
        plan.accuracy.sites,
        plan.accuracy.rate,
        plan.accuracy.window.as_secs()
    ));
    let measured =
        accuracy::measure(setup, plan.accuracy).with_context(|| accuracy::context(plan.accuracy))?;
    progress.println(accuracy::summary(&measured));
    progress.step(format!(
        "idle: {} held ready queues, CPU over {} s",
        plan.idle.queues,
        plan.idle.period.as_secs()
    ));
    let held = idle::measure(setup, plan.idle).context("idle-cost scenario")?;
    progress.println(idle::summary(&held));
    Ok(ShapingFacts {
        accuracy: measured,
        idle: held,
    })
}

/// Time-to-250 of every MTA of the plan's latency list.
fn measure_latencies(
    plan: &Plan,
    setup: &Setup<'_>,
    progress: &Progress,
) -> anyhow::Result<BTreeMap<Mta, (f64, f64)>> {
    let runtime = tokio::runtime::Runtime::new()?;
    let mut latencies = BTreeMap::new();
    for mta in &plan.latency_mtas {
        progress.step(format!("time-to-250 of {}", mta.kind()));
        let measured = scenario::latency(setup, *mta, plan.latency_messages, &runtime)
            .with_context(|| format!("latency scenario of {}", mta.kind()))?;
        latencies.insert(*mta, measured);
    }
    Ok(latencies)
}

/// The median of one field over the rounds.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied()
}

/// The medians of sign/s and verify/s over the rounds.
fn median_rates(rates: &[Rates]) -> Option<Rates> {
    Some(Rates {
        sign: median(rates.iter().map(|rates| rates.sign))?,
        verify: median(rates.iter().map(|rates| rates.verify))?,
    })
}

/// One figure per (workload, MTA), medians over the rounds, with the ratios of the same workload.
fn figures(
    plan: &Plan,
    samples: &BTreeMap<(usize, Mta), Vec<Measurement>>,
    latencies: &BTreeMap<Mta, (f64, f64)>,
) -> Vec<Figure> {
    let rate = |index: usize, mta: Mta| {
        samples
            .get(&(index, mta))
            .and_then(|runs| median(runs.iter().map(|m| m.rate)))
    };
    let mut figures = Vec::new();
    for (index, workload) in plan.workloads.iter().enumerate() {
        let (ceiling, postfix) = (rate(index, Mta::Ceiling), rate(index, Mta::Postfix));
        let unsigned = rate(index, Mta::Penguin);
        for mta in plan.mtas(index) {
            let Some(runs) = samples.get(&(index, mta)) else {
                continue;
            };
            let msgs_per_sec = rate(index, mta).unwrap_or(0.0);
            let latency = if index == 0 {
                latencies.get(&mta).copied()
            } else {
                None
            };
            // Reception alone is not comparable with Postfix's end-to-end relay.
            let is_penguin = !matches!(mta, Mta::Ceiling | Mta::Postfix | Mta::PenguinReception);
            figures.push(Figure {
                scenario: format!("{} ({})", scenario_name(mta), workload.label),
                kind: mta.kind().to_string(),
                messages: plan.count(mta, *workload) as u64,
                rounds: runs.len(),
                msgs_per_sec,
                ratio_to_ceiling: ceiling.filter(|_| mta != Mta::Ceiling).map(|c| msgs_per_sec / c),
                ratio_to_postfix: postfix.filter(|_| is_penguin).map(|p| msgs_per_sec / p),
                ratio_to_unsigned: unsigned.filter(|_| mta.signing().is_some()).map(|u| msgs_per_sec / u),
                cpu_s_per_1000: median(runs.iter().filter_map(|m| m.cpu_per_1000)),
                p50_ms: latency.map(|(p50, _)| p50),
                p99_ms: latency.map(|(_, p99)| p99),
                peak_rss_mib: median(runs.iter().filter_map(|m| m.memory_mib)),
                note: (mta == Mta::Postfix && index == 0).then(|| {
                    "Postfix memory is the summed PSS of its processes at the end of the run (RSS summed over \
                     ~100 processes would count shared pages many times); penguin-mta's is its peak RSS (VmHWM)."
                        .to_string()
                }),
            });
        }
    }
    figures
}

/// The human name of an MTA's scenario.
fn scenario_name(mta: Mta) -> &'static str {
    match mta {
        Mta::Ceiling => "ceiling: smtp-source → smtp-sink",
        Mta::Postfix => "Postfix relay: smtp-source → Postfix → smtp-sink",
        Mta::Penguin => "penguin-mta: smtp-source → penguin-mta → smtp-sink",
        Mta::PenguinDkim(Signing::Rsa) => {
            "penguin-mta + DKIM RSA-2048: smtp-source → penguin-mta → smtp-sink"
        }
        Mta::PenguinDkim(Signing::Ed25519) => {
            "penguin-mta + DKIM Ed25519: smtp-source → penguin-mta → smtp-sink"
        }
        Mta::PenguinShaping => {
            "penguin-mta, shaping configured (not binding): smtp-source → penguin-mta → smtp-sink"
        }
        Mta::PenguinReception => "penguin-mta reception only (delivery paused): smtp-source → penguin-mta",
    }
}

#[path = "run_report.rs"]
mod run_report;
use run_report::{DkimFacts, ShapingFacts, extra_markdown, write_outputs};

/// Default output directory of a run.
fn out_dir(args: &RunArgs) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &args.out_dir {
        return Ok(dir.clone());
    }
    if args.quick {
        let dir = std::env::temp_dir().join(format!("penguin-bench-quick-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        return Ok(dir);
    }
    Ok(PathBuf::from("bench"))
}

/// The scale figures for the goals table.
fn scale_ratio(scale: &Scale) -> f64 {
    scale.raw_scan.as_secs_f64() / scale.restart.as_secs_f64().max(1e-9)
}
