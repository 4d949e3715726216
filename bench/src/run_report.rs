//! What a run writes: the scale figures, the DKIM figures, the shaping figures, the goals of the
//! issues against the measured figures, the JSON lines, the PNG and (full runs only) the generated
//! section of RESULTS.md.

use std::collections::BTreeMap;

use super::{Crypto, Figure, Rates, RunArgs, RunInfo, Scale, Signing, out_dir, report, scale_ratio};
use crate::accuracy::Accuracy;
use crate::idle::Idle;

/// The shaping goals: end to end with shaping configured (not binding) and reception alone, as
/// fractions of the ceiling; the worst lane's relative rate error; idle CPU in percent of a core.
const SHAPING_E2E_GOAL: f64 = 0.5;
/// See [`SHAPING_E2E_GOAL`].
const RECEPTION_GOAL: f64 = 0.6;
/// See [`SHAPING_E2E_GOAL`].
const ACCURACY_GOAL: f64 = 0.05;
/// See [`SHAPING_E2E_GOAL`].
const IDLE_GOAL_PERCENT: f64 = 2.0;

/// The figures of the shaping scenarios that are not workloads.
pub struct ShapingFacts {
    /// Shaping accuracy.
    pub accuracy: Accuracy,
    /// Idle cost of held ready queues.
    pub idle: Idle,
}

/// The DKIM goal: penguin-mta signing every message with RSA-2048 reaches at least this fraction of
/// one core's RSA-2048 signing rate.
const DKIM_RSA_GOAL: f64 = 0.35;

/// The DKIM facts beside the table: one core's signing rates and what the probes verified.
pub struct DkimFacts {
    /// Median `openssl speed` rates per algorithm.
    pub speeds: BTreeMap<Crypto, Rates>,
    /// `openssl speed -seconds` of each measurement.
    pub seconds: u32,
    /// Rounds the medians were taken over.
    pub rounds: usize,
    /// What each signing probe verified.
    pub probes: Vec<(Signing, String)>,
}

impl DkimFacts {
    /// The figure of the DKIM scenario `signing` and its rate over one core's signing rate.
    fn ratio<'a>(&self, figures: &'a [Figure], signing: Signing) -> Option<(&'a Figure, f64)> {
        let crypto = match signing {
            Signing::Rsa => Crypto::Rsa2048,
            Signing::Ed25519 => Crypto::Ed25519,
        };
        let figure = headline(figures, super::Mta::PenguinDkim(signing).kind())?;
        let sign = self.speeds.get(&crypto)?.sign;
        Some((figure, figure.msgs_per_sec / sign))
    }
}

/// One goal: what it says, the measured value, whether it is met.
struct Goal {
    /// The goal as the issue states it.
    text: &'static str,
    /// The measured value, formatted.
    measured: String,
    /// Met or not; `None` when the run did not measure it.
    met: Option<bool>,
}

/// The headline figures (first workload) of `kind`.
fn headline<'a>(figures: &'a [Figure], kind: &str) -> Option<&'a Figure> {
    figures.iter().find(|figure| figure.kind == kind)
}

/// The goals of the benchmark issues, checked against this run.
fn goals(figures: &[Figure], scale: Option<&Scale>, dkim: &DkimFacts, shaping: &ShapingFacts) -> Vec<Goal> {
    let mut goals = base_goals(figures, scale, dkim);
    goals.extend(shaping_goals(figures, shaping));
    goals
}

/// The goals of the shaping issue.
fn shaping_goals(figures: &[Figure], shaping: &ShapingFacts) -> Vec<Goal> {
    let ceiling = |kind: &str| headline(figures, kind).and_then(|f| f.ratio_to_ceiling);
    let ratio_goal = |text, value: Option<f64>, goal: f64| Goal {
        text,
        measured: value.map_or("—".to_string(), |v| format!("{v:.2}")),
        met: value.map(|v| v >= goal),
    };
    let accuracy = &shaping.accuracy;
    let worst = accuracy.worst_error();
    let busy = accuracy.backlogged == accuracy.plan.lanes();
    let idle = shaping.idle.percent_of_core();
    vec![
        ratio_goal(
            "end to end with shaping configured (not binding) ≥ 0.5 of the ceiling",
            ceiling("penguin-shaping"),
            SHAPING_E2E_GOAL,
        ),
        ratio_goal(
            "reception alone (delivery paused) ≥ 0.6 of the ceiling",
            ceiling("penguin-reception"),
            RECEPTION_GOAL,
        ),
        Goal {
            text: "shaping accuracy: every (source, site) lane within ±5% of its rate",
            measured: format!(
                "worst {:+.1}%, mean {:.2}% ({} lanes{})",
                worst * 100.0,
                accuracy.mean_abs_error() * 100.0,
                accuracy.plan.lanes(),
                if busy { "" } else { ", not all busy to the end" }
            ),
            met: Some(worst.abs() <= ACCURACY_GOAL && busy),
        },
        Goal {
            text: "idle with 10,000 held ready queues < 2% of a core",
            measured: format!("{idle:.2}% ({} queues)", shaping.idle.held),
            // Fewer queues (the smoke run) do not measure this goal.
            met: (shaping.idle.held >= 10_000).then_some(idle < IDLE_GOAL_PERCENT),
        },
    ]
}

/// The goals of the earlier benchmark issues.
fn base_goals(figures: &[Figure], scale: Option<&Scale>, dkim: &DkimFacts) -> Vec<Goal> {
    let penguin = headline(figures, "penguin");
    let postfix = headline(figures, "postfix");
    let value = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("—".to_string(), f);
    let x_postfix = penguin.and_then(|p| p.ratio_to_postfix);
    let x_ceiling = penguin.and_then(|p| p.ratio_to_ceiling);
    let cpu_ratio = penguin
        .and_then(|p| p.cpu_s_per_1000)
        .zip(postfix.and_then(|p| p.cpu_s_per_1000))
        .map(|(ours, theirs)| ours / theirs);
    let rss = scale.map(|s| s.rss_per_message);
    let recovery = scale.map(scale_ratio);
    let dkim_rsa = dkim.ratio(figures, Signing::Rsa).map(|(_, ratio)| ratio);
    vec![
        Goal {
            text: "end to end ≥ 5× Postfix",
            measured: value(x_postfix, &|v| format!("{v:.1}×")),
            met: x_postfix.map(|v| v >= 5.0),
        },
        Goal {
            text: "end to end ≥ 0.5 of the ceiling",
            measured: value(x_ceiling, &|v| format!("{v:.2}")),
            met: x_ceiling.map(|v| v >= 0.5),
        },
        Goal {
            text: "CPU per 1,000 messages ≤ ¼ of Postfix's",
            measured: value(cpu_ratio, &|v| format!("{v:.3} of Postfix's")),
            met: cpu_ratio.map(|v| v <= 0.25),
        },
        Goal {
            text: "≤ 300 B RSS per queued message",
            measured: value(rss, &|v| format!("{v:.0} B")),
            met: rss.map(|v| v <= 300.0),
        },
        Goal {
            text: "recovery ≥ 0.5 of raw scan speed",
            measured: value(recovery, &|v| format!("{v:.2}")),
            met: recovery.map(|v| v >= 0.5),
        },
        Goal {
            text: "DKIM RSA e2e rate / one-core RSA-2048 sign rate ≥ 0.35",
            measured: value(dkim_rsa, &|v| format!("{v:.2}")),
            met: dkim_rsa.map(|v| v >= DKIM_RSA_GOAL),
        },
    ]
}

/// The Markdown after the table: scale figures, DKIM figures, shaping figures and the goals.
pub fn extra_markdown(
    figures: &[Figure],
    scale: Option<&Scale>,
    dkim: &DkimFacts,
    shaping: &ShapingFacts,
    info: &mut RunInfo,
) -> String {
    let mut text = String::new();
    if let Some(scale) = scale {
        info.extra
            .push(("scale messages".into(), scale.messages.to_string()));
        info.extra.push((
            "RSS per queued message (B)".into(),
            format!("{:.0}", scale.rss_per_message),
        ));
        info.extra.push((
            "restart with the queue (s)".into(),
            format!("{:.3}", scale.restart.as_secs_f64()),
        ));
        info.extra.push((
            "raw RocksDB scan (s)".into(),
            format!("{:.3}", scale.raw_scan.as_secs_f64()),
        ));
        text.push_str(&format!(
            "Scale: {} messages queued (300 B payload, delivery paused): penguin-mta's RSS after a restart is \
             {:.0} B per queued message above an empty server's; the restart (process start to SMTP listening, \
             recovery included) took {:.3} s, a raw RocksDB scan of the same spool's envelopes {:.3} s: \
             recovery runs at {:.2} of raw scan speed.\n\n",
            scale.messages,
            scale.rss_per_message,
            scale.restart.as_secs_f64(),
            scale.raw_scan.as_secs_f64(),
            scale_ratio(scale)
        ));
    }
    text.push_str(&dkim_markdown(figures, dkim, info));
    text.push_str(&shaping_markdown(figures, shaping, info));
    text.push_str("| goal | measured | met |\n|---|---:|---|\n");
    for goal in goals(figures, scale, dkim, shaping) {
        let met = match goal.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        text.push_str(&format!("| {} | {} | {met} |\n", goal.text, goal.measured));
    }
    text
}

/// The DKIM paragraph (one core's signing rates, each DKIM scenario against them, what the probes
/// verified); the rates and ratios also go into `info.extra` (JSON lines, RESULTS.md).
fn dkim_markdown(figures: &[Figure], dkim: &DkimFacts, info: &mut RunInfo) -> String {
    if dkim.speeds.is_empty() && dkim.probes.is_empty() {
        return String::new();
    }
    let mut text = String::from("DKIM: ");
    let mut rates = Vec::new();
    for (crypto, speed) in &dkim.speeds {
        let name = crypto.arg();
        info.extra.push((
            format!("openssl {name} sign/s (one core)"),
            format!("{:.0}", speed.sign),
        ));
        info.extra.push((
            format!("openssl {name} verify/s (one core)"),
            format!("{:.0}", speed.verify),
        ));
        rates.push(format!("{:.0} {name} signatures", speed.sign));
    }
    text.push_str(&format!(
        "one core makes {} per CPU-second (`openssl speed -seconds {} ALGORITHM`, median of {} round{}). ",
        rates.join(" and "),
        dkim.seconds,
        dkim.rounds,
        if dkim.rounds == 1 { "" } else { "s" }
    ));
    for (signing, _) in &dkim.probes {
        let Some((figure, ratio)) = dkim.ratio(figures, *signing) else {
            continue;
        };
        info.extra.push((
            format!("DKIM {} e2e / one-core sign rate", signing.label()),
            format!("{ratio:.3}"),
        ));
        text.push_str(&format!(
            "penguin-mta signing every message with {}: {} msg/s = {ratio:.2} of one core's {} signing rate{}. ",
            signing.label(),
            report::format_rate(figure.msgs_per_sec),
            signing.label(),
            figure
                .ratio_to_unsigned
                .map_or(String::new(), |x| format!(", {x:.2}× unsigned penguin-mta"))
        ));
    }
    let probes: Vec<String> = dkim
        .probes
        .iter()
        .map(|(signing, verified)| format!("{}: {verified}", signing.label()))
        .collect();
    text.push_str(&format!(
        "Signatures checked on a probe message through an engine with the same config: {}; after every \
         DKIM run the engine under test counted no `dkim_unsigned` event.\n\n",
        probes.join("; ")
    ));
    text
}

/// The shaping paragraph: the cost of configured shaping, the accuracy of the lanes' rates, the idle
/// cost of held queues; the figures also go into `info.extra`.
fn shaping_markdown(figures: &[Figure], shaping: &ShapingFacts, info: &mut RunInfo) -> String {
    let mut text = String::from("Shaping: ");
    let plain = headline(figures, "penguin").map(|f| f.msgs_per_sec);
    if let (Some(shaped), Some(plain)) = (headline(figures, "penguin-shaping"), plain) {
        text.push_str(&format!(
            "with `[shaping]` configured far above what the run reaches (100000/s and 20 connections per \
             lane, a provider entry, a reply rule) penguin-mta delivers {} msg/s end to end = {:.2}× the plain \
             engine's {} msg/s. ",
            report::format_rate(shaped.msgs_per_sec),
            shaped.msgs_per_sec / plain,
            report::format_rate(plain)
        ));
    }
    let accuracy = &shaping.accuracy;
    let plan = accuracy.plan;
    let (min, max) = accuracy.rate_range();
    text.push_str(&format!(
        "Accuracy: {} recipient domains on {} sites, 2 sources, every (source, site) lane limited to {}/s \
         ({} lanes), {} messages injected over SMTP in {:.1} s with delivery running; rates counted at the \
         receiving sites over {} s after skipping the first {} s: worst lane {:+.2}% off its rate, mean \
         |error| {:.2}% (mean signed {:+.2}%), lanes {min:.2}–{max:.2} msg/s; {} of {} lanes still had mail \
         queued at the end of the window. ",
        plan.domains,
        plan.sites,
        plan.rate,
        plan.lanes(),
        accuracy.messages,
        accuracy.injection.as_secs_f64(),
        plan.window.as_secs(),
        plan.skip.as_secs(),
        accuracy.worst_error() * 100.0,
        accuracy.mean_abs_error() * 100.0,
        accuracy.mean_error() * 100.0,
        accuracy.backlogged,
        plan.lanes()
    ));
    let idle = &shaping.idle;
    text.push_str(&format!(
        "Idle: {} ready queues (one site each) holding one message each under an operator suspension of \
         the source: the engine used {:.3} CPU-s in {:.0} s = {:.2}% of one core (and {:.2} CPU-s from its \
         start until every queue held its message, {:.1} s after the first of them was sent).\n\n",
        idle.held,
        idle.cpu_seconds,
        idle.wall.as_secs_f64(),
        idle.percent_of_core(),
        idle.filling_cpu,
        idle.filling.as_secs_f64()
    ));
    let entries = [
        (
            "shaping accuracy worst error (%)",
            format!("{:+.2}", accuracy.worst_error() * 100.0),
        ),
        (
            "shaping accuracy mean |error| (%)",
            format!("{:.2}", accuracy.mean_abs_error() * 100.0),
        ),
        (
            "shaping accuracy lanes busy to the end",
            format!("{} of {}", accuracy.backlogged, plan.lanes()),
        ),
        ("idle held queues", idle.held.to_string()),
        ("idle CPU (% of a core)", format!("{:.2}", idle.percent_of_core())),
    ];
    info.extra
        .extend(entries.into_iter().map(|(key, value)| (key.to_string(), value)));
    text
}

/// JSON lines and the PNG into the output directory; RESULTS.md for full runs.
pub fn write_outputs(
    args: &RunArgs,
    info: &RunInfo,
    figures: &[Figure],
    table: &str,
    extra: &str,
) -> anyhow::Result<()> {
    let dir = out_dir(args)?;
    let json = dir.join("results.jsonl");
    let png = dir.join("results.png");
    report::write_json_lines(&json, figures, info)?;
    report::plot_png(&png, figures, &format!("penguin-bench {} — msg/s", info.date))?;
    println!("wrote {} and {}", json.display(), png.display());
    if !args.quick {
        report::update_results_md(&args.results, info, table, extra)?;
        println!("updated {}", args.results.display());
    }
    Ok(())
}
