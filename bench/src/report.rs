//! Reporting of a benchmark run: the Markdown table on stdout, a progress bar while running, JSON lines
//! for machines, a PNG bar chart of msg/s per scenario and the generated section of bench/RESULTS.md.
//!
//! The runner measures; this module only formats what it is given (medians already taken).

mod machine;
mod plot;
mod progress;
mod results_md;

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

pub use plot::plot_png;
pub use progress::Progress;
pub use results_md::update_results_md;

/// One measured scenario (medians over rounds already taken by the caller).
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    /// What was measured, e.g. "penguin-mta end to end (5 KiB, reuse, 1 rcpt)".
    pub scenario: String,
    /// "ceiling" | "postfix" | "penguin" | "penguin-dkim-rsa" | "penguin-dkim-ed25519": colours and
    /// grouping.
    pub kind: String,
    /// Messages per round.
    pub messages: u64,
    /// Rounds the medians were taken over.
    pub rounds: usize,
    /// Median messages per second.
    pub msgs_per_sec: f64,
    /// msg/s divided by the same run's loopback ceiling.
    pub ratio_to_ceiling: Option<f64>,
    /// msg/s divided by the same run's Postfix figure for the same scenario.
    pub ratio_to_postfix: Option<f64>,
    /// msg/s divided by the same run's unsigned penguin-mta figure (the DKIM scenarios).
    pub ratio_to_unsigned: Option<f64>,
    /// CPU seconds of the MTA's process tree per 1,000 messages.
    pub cpu_s_per_1000: Option<f64>,
    /// Median per-message latency, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile per-message latency, ms.
    pub p99_ms: Option<f64>,
    /// Peak resident set of the MTA's process tree, MiB.
    pub peak_rss_mib: Option<f64>,
    /// A remark shown as a footnote under the table.
    pub note: Option<String>,
}

/// Where and how a run was made; carried by every JSON line and written into RESULTS.md.
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    /// Start of the run, `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
    /// CPU model and count, RAM, kernel, disk of the spool directory.
    pub machine: String,
    /// The command line that produced the run.
    pub command: String,
    /// Further key/value facts, e.g. scale figures ("messages per run", "20000").
    pub extra: Vec<(String, String)>,
}

/// Placeholder of an absent value in the table.
const NONE: &str = "—";

/// The figures as a Markdown table (columns: scenario | msg/s | × ceiling | × Postfix | × unsigned |
/// CPU s/1000 | p50 ms | p99 ms | peak RSS MiB), followed by a list of numbered footnotes for the figures with a note.
pub fn render_table(figures: &[Figure]) -> String {
    fn cell(value: Option<f64>, decimals: usize) -> String {
        match value {
            Some(value) if value.is_finite() => format!("{value:.decimals$}"),
            _ => NONE.to_owned(),
        }
    }
    let mut out = String::from(
        "| scenario | msg/s | × ceiling | × Postfix | × unsigned | CPU s/1000 | p50 ms | p99 ms | peak RSS MiB |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut notes = Vec::new();
    for figure in figures {
        let mut scenario = escape_cell(&figure.scenario);
        if let Some(note) = &figure.note {
            notes.push(note.as_str());
            scenario.push_str(&format!(" [{}]", notes.len()));
        }
        out.push_str(&format!(
            "| {scenario} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            format_rate(figure.msgs_per_sec),
            cell(figure.ratio_to_ceiling, 2),
            cell(figure.ratio_to_postfix, 2),
            cell(figure.ratio_to_unsigned, 2),
            cell(figure.cpu_s_per_1000, 3),
            cell(figure.p50_ms, 2),
            cell(figure.p99_ms, 2),
            cell(figure.peak_rss_mib, 0),
        ));
    }
    if !notes.is_empty() {
        out.push('\n');
        for (number, note) in notes.iter().enumerate() {
            out.push_str(&format!("- [{}] {}\n", number + 1, one_line_note(note)));
        }
    }
    out
}

/// msg/s with precision that suits its magnitude (whole numbers from 100/s up).
pub(crate) fn format_rate(rate: f64) -> String {
    if !rate.is_finite() {
        NONE.to_owned()
    } else if rate >= 100.0 {
        format!("{rate:.0}")
    } else if rate >= 10.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate:.2}")
    }
}

/// A footnote on one line (a list item).
fn one_line_note(note: &str) -> String {
    note.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A table cell's text: pipes escaped, line breaks flattened.
fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\r', '\n'], " ")
}

/// Writes (replacing the file) one JSON object per figure: the figure's fields plus the run's `date`,
/// `machine`, `command` and `extra` (an object).
pub fn write_json_lines(path: &Path, figures: &[Figure], run: &RunInfo) -> anyhow::Result<()> {
    let extra: serde_json::Map<String, serde_json::Value> = run
        .extra
        .iter()
        .map(|(key, value)| (key.clone(), serde_json::Value::String(value.clone())))
        .collect();
    let mut out = String::new();
    for figure in figures {
        let mut line = match serde_json::to_value(figure)? {
            serde_json::Value::Object(map) => map,
            other => anyhow::bail!("a figure serialised to {other}, not an object"),
        };
        line.insert("date".into(), run.date.clone().into());
        line.insert("machine".into(), run.machine.clone().into());
        line.insert("command".into(), run.command.clone().into());
        line.insert("extra".into(), extra.clone().into());
        out.push_str(&serde_json::to_string(&line)?);
        out.push('\n');
    }
    let mut file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(out.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ceiling, a Postfix and a penguin figure; the Postfix one has mostly absent values.
    pub(crate) fn sample_figures() -> Vec<Figure> {
        let figure = |scenario: &str, kind: &str, rate: f64| Figure {
            scenario: scenario.into(),
            kind: kind.into(),
            messages: 20_000,
            rounds: 3,
            msgs_per_sec: rate,
            ratio_to_ceiling: None,
            ratio_to_postfix: None,
            ratio_to_unsigned: None,
            cpu_s_per_1000: None,
            p50_ms: None,
            p99_ms: None,
            peak_rss_mib: None,
            note: None,
        };
        vec![
            Figure {
                ratio_to_ceiling: Some(1.0),
                ..figure("ceiling: smtp-source → smtp-sink", "ceiling", 28927.0)
            },
            Figure {
                ratio_to_ceiling: Some(0.0614),
                note: Some("queue_directory on the same disk".into()),
                ..figure("Postfix relay | end to end", "postfix", 1776.4)
            },
            Figure {
                ratio_to_ceiling: Some(0.4157),
                ratio_to_postfix: Some(6.771),
                cpu_s_per_1000: Some(0.0834),
                p50_ms: Some(0.583),
                p99_ms: Some(1.456),
                peak_rss_mib: Some(93.6),
                ..figure(
                    "penguin-mta end to end (5 KiB, reuse, 1 rcpt)",
                    "penguin",
                    12027.3,
                )
            },
        ]
    }

    pub(crate) fn sample_run() -> RunInfo {
        RunInfo {
            date: "2026-11-26 09:41 UTC".into(),
            machine: "Intel(R) Xeon(R) Processor, 2 CPUs (virtual), 23.5 GiB RAM, Linux 6.18".into(),
            command: "./x bench intake".into(),
            extra: vec![
                ("sessions".into(), "20".into()),
                ("messages per run".into(), "20000".into()),
            ],
        }
    }

    #[test]
    fn table_has_every_column_and_dashes_for_absent_values() {
        let table = render_table(&sample_figures());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "| scenario | msg/s | × ceiling | × Postfix | × unsigned | CPU s/1000 | p50 ms | p99 ms | peak RSS MiB |"
        );
        assert_eq!(lines[1], "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        assert_eq!(
            lines[2],
            "| ceiling: smtp-source → smtp-sink | 28927 | 1.00 | — | — | — | — | — | — |"
        );
        assert_eq!(
            lines[3],
            "| Postfix relay \\| end to end [1] | 1776 | 0.06 | — | — | — | — | — | — |"
        );
        assert_eq!(
            lines[4],
            "| penguin-mta end to end (5 KiB, reuse, 1 rcpt) | 12027 | 0.42 | 6.77 | — | 0.083 | 0.58 | 1.46 | 94 |"
        );
        assert_eq!(lines[5], "");
        assert_eq!(lines[6], "- [1] queue_directory on the same disk");
        assert_eq!(lines.len(), 7);
        // Every row has the header's number of cells (escaped pipes do not count).
        for row in &lines[..5] {
            assert_eq!(row.replace("\\|", "").matches('|').count(), 10, "{row}");
        }
    }

    #[test]
    fn a_dkim_row_shows_its_ratio_to_unsigned() {
        let figure = Figure {
            scenario: "penguin-mta + DKIM RSA-2048".into(),
            kind: "penguin-dkim-rsa".into(),
            ratio_to_postfix: Some(3.0),
            ratio_to_unsigned: Some(0.254),
            ..sample_figures()[2].clone()
        };
        let table = render_table(&[figure]);
        assert!(
            table.ends_with(
                "| penguin-mta + DKIM RSA-2048 | 12027 | 0.42 | 3.00 | 0.25 | 0.083 | 0.58 | 1.46 | 94 |\n"
            ),
            "{table}"
        );
    }

    #[test]
    fn table_without_notes_has_no_footnotes() {
        let mut figures = sample_figures();
        figures[1].note = None;
        figures[1].msgs_per_sec = 7.25;
        let table = render_table(&figures);
        assert_eq!(table.lines().count(), 5);
        assert!(
            table.contains("| Postfix relay \\| end to end | 7.25 |"),
            "{table}"
        );
        assert!(table.ends_with("| 94 |\n"));
    }

    #[test]
    fn json_lines_parse_back_and_carry_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        std::fs::write(&path, "stale content that must go\n").unwrap();
        let figures = sample_figures();
        let run = sample_run();
        write_json_lines(&path, &figures, &run).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), figures.len());
        for (line, figure) in lines.iter().zip(&figures) {
            assert_eq!(line["scenario"], figure.scenario.as_str());
            assert_eq!(line["kind"], figure.kind.as_str());
            assert_eq!(line["messages"], 20_000);
            assert_eq!(line["rounds"], 3);
            assert_eq!(line["msgs_per_sec"].as_f64(), Some(figure.msgs_per_sec));
            assert_eq!(line["p50_ms"].as_f64(), figure.p50_ms);
            assert_eq!(line["note"].as_str(), figure.note.as_deref());
            assert_eq!(line["date"], "2026-11-26 09:41 UTC");
            assert_eq!(line["machine"], run.machine.as_str());
            assert_eq!(line["command"], "./x bench intake");
            assert_eq!(line["extra"]["sessions"], "20");
            assert_eq!(line["extra"]["messages per run"], "20000");
        }
        assert!(lines[0]["ratio_to_postfix"].is_null());
        assert_eq!(lines[2]["peak_rss_mib"].as_f64(), Some(93.6));
    }

    /// The runner's sequence through the public API: progress, table, JSON lines, chart, RESULTS.md.
    #[test]
    fn a_full_report() {
        let dir = tempfile::tempdir().unwrap();
        let figures = sample_figures();
        let progress = Progress::new(figures.len());
        for figure in &figures {
            progress.step(format!("round 1: {}", figure.scenario));
        }
        progress.finish();
        let table = render_table(&figures);
        progress.println(&table);
        let mut run = RunInfo::collect_with_spool("penguin-bench".into(), std::path::Path::new("/var/tmp"));
        run.extra.push(("rounds".into(), "3".into()));
        write_json_lines(&dir.path().join("results.jsonl"), &figures, &run).unwrap();
        plot_png(&dir.path().join("results.png"), &figures, "intake").unwrap();
        let results = dir.path().join("RESULTS.md");
        update_results_md(&results, &run, &table, "").unwrap();
        let text = std::fs::read_to_string(&results).unwrap();
        assert!(
            text.contains(&run.machine) && text.contains("- rounds: 3\n"),
            "{text}"
        );
    }
}
