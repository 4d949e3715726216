//! What a run writes: the scale figures, the goals of the issue against the measured figures, the
//! JSON lines, the PNG and (full runs only) the generated section of RESULTS.md.

use super::{Figure, RunArgs, RunInfo, Scale, out_dir, report, scale_ratio};

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

/// The goals of the benchmark issue, checked against this run.
fn goals(figures: &[Figure], scale: Option<&Scale>) -> Vec<Goal> {
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
    ]
}

/// The Markdown after the table: scale figures and the goals.
pub fn extra_markdown(figures: &[Figure], scale: Option<&Scale>, info: &mut RunInfo) -> String {
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
    text.push_str("| goal | measured | met |\n|---|---:|---|\n");
    for goal in goals(figures, scale) {
        let met = match goal.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        text.push_str(&format!("| {} | {} | {met} |\n", goal.text, goal.measured));
    }
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
