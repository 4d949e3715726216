//! The generated "Latest full run" section of bench/RESULTS.md; the rest of the file is hand-written
//! history and is kept byte for byte.

use std::path::Path;

use anyhow::Context;

use super::RunInfo;

/// First line of the generated section.
pub(crate) const BEGIN_MARKER: &str = "<!-- penguin-bench:latest:begin -->";
/// Last line of the generated section.
pub(crate) const END_MARKER: &str = "<!-- penguin-bench:latest:end -->";
/// The chart, relative to RESULTS.md (bench/results.png).
const PNG_LINK: &str = "results.png";
/// The heading of a file that does not exist yet.
const NEW_FILE_HEADING: &str = "# Benchmark results\n";

/// Writes the run's section (date, machine, command, `extra` facts, `table`, `extra_markdown` and the
/// PNG) into the Markdown file at `path`: replaces the section between the markers if there is one,
/// otherwise inserts it after the first heading and its introduction (before the first sub-heading),
/// so it comes first. The file is created if missing; everything outside the section stays as it was.
pub fn update_results_md(
    path: &Path,
    run: &RunInfo,
    table: &str,
    extra_markdown: &str,
) -> anyhow::Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let new = splice(&old, &render_section(run, table, extra_markdown))
        .with_context(|| format!("updating {}", path.display()))?;
    // Write then rename: an interrupted run never leaves half a file.
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = std::path::PathBuf::from(temporary);
    std::fs::write(&temporary, new).with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// The generated section, markers included, ending with a newline.
fn render_section(run: &RunInfo, table: &str, extra_markdown: &str) -> String {
    let mut out = format!("{BEGIN_MARKER}\n## Latest full run\n\n");
    out.push_str(
        "<!-- Written by penguin-bench after every full run and replaced by the next one; the dated \
         sections below are the hand-written history. -->\n\n",
    );
    out.push_str(&format!("- Date: {}\n", one_line(&run.date)));
    out.push_str(&format!("- Machine: {}\n", one_line(&run.machine)));
    out.push_str(&format!("- Command: {}\n", code_span(&one_line(&run.command))));
    for (key, value) in &run.extra {
        out.push_str(&format!("- {}: {}\n", one_line(key), one_line(value)));
    }
    out.push('\n');
    let table = table.trim();
    if !table.is_empty() {
        out.push_str(table);
        out.push_str("\n\n");
    }
    let extra = extra_markdown.trim();
    if !extra.is_empty() {
        out.push_str(extra);
        out.push_str("\n\n");
    }
    out.push_str(&format!("![msg/s per scenario]({PNG_LINK})\n\n{END_MARKER}\n"));
    out
}

/// Text on one line (a list item must not break).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` as inline code, with a fence longer than any run of backticks inside it.
fn code_span(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// Lines of `text` with the byte offset each starts at, and whether it lies inside a fenced code block.
fn lines_with_offsets(text: &str) -> Vec<(usize, &str, bool)> {
    let mut lines = Vec::new();
    let mut offset = 0;
    let mut fence: Option<&str> = None;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let trimmed = content.trim_start();
        let opener = ["```", "~~~"].into_iter().find(|mark| trimmed.starts_with(mark));
        let in_code = match (fence, opener) {
            (Some(open), Some(mark)) if open == mark => {
                fence = None;
                true
            }
            (Some(_), _) => true,
            (None, Some(mark)) => {
                fence = Some(mark);
                true
            }
            (None, None) => false,
        };
        lines.push((offset, content, in_code));
        offset += line.len();
    }
    lines
}

/// Whether a line is an ATX heading ("# Title", "## Section").
fn is_heading(line: &str) -> bool {
    let hashes = line.len() - line.trim_start_matches('#').len();
    (1..=6).contains(&hashes)
        && line[hashes..]
            .chars()
            .next()
            .is_none_or(|c| c == ' ' || c == '\t')
}

/// `old` with `section` in place of its generated section, or with `section` inserted.
fn splice(old: &str, section: &str) -> anyhow::Result<String> {
    let lines = lines_with_offsets(old);
    let marker_lines = |marker: &str| -> Vec<usize> {
        lines
            .iter()
            .enumerate()
            .filter(|(_, (_, line, in_code))| !in_code && line.trim() == marker)
            .map(|(index, _)| index)
            .collect()
    };
    let begins = marker_lines(BEGIN_MARKER);
    let ends = marker_lines(END_MARKER);
    match (begins.as_slice(), ends.as_slice()) {
        ([begin], [end]) if begin < end => {
            let start = lines[*begin].0;
            let stop = lines.get(end + 1).map_or(old.len(), |line| line.0);
            Ok(format!("{}{section}{}", &old[..start], &old[stop..]))
        }
        ([], []) => Ok(insert(old, &lines, section)),
        _ => anyhow::bail!(
            "the generated section is damaged ({} `{BEGIN_MARKER}` and {} `{END_MARKER}` lines, in that \
             order expected once each): fix the file by hand",
            begins.len(),
            ends.len()
        ),
    }
}

/// `old` with `section` and a blank line inserted before the second heading (after the first heading
/// and its introduction), at the end if there is no second heading, at the start if there is none.
fn insert(old: &str, lines: &[(usize, &str, bool)], section: &str) -> String {
    if old.trim().is_empty() {
        return format!("{NEW_FILE_HEADING}\n{section}");
    }
    let mut headings = lines
        .iter()
        .filter(|(_, line, in_code)| !in_code && is_heading(line))
        .map(|(offset, _, _)| *offset);
    match (headings.next(), headings.next()) {
        (Some(_), Some(second)) => format!("{}{section}\n{}", &old[..second], &old[second..]),
        (Some(_), None) => {
            let separator = if old.ends_with("\n\n") {
                ""
            } else if old.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            format!("{old}{separator}{section}")
        }
        (None, _) => format!("{section}\n{old}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::render_table;
    use crate::report::tests::{sample_figures, sample_run};

    const HISTORY: &str = "# Benchmark results\n\nEvery figure here is a same-run comparison.\n\n\
        ## 2026-11-25 — SMTP intake with fsync (issue 3)\n\nMachine: 2 vCPU\n\n```\n# not a heading\n\
        ./x bench intake\n```\n\n| scenario | msg/s |\n|---|---:|\n| ceiling | 26627 |\n\n\
        ## In-RAM index per queued message\n\n84 B per queued message\n";

    /// (before the section, the section, after the section) of a file with exactly one section.
    fn parts(text: &str) -> (&str, &str, &str) {
        assert_eq!(text.matches(BEGIN_MARKER).count(), 1, "{text}");
        assert_eq!(text.matches(END_MARKER).count(), 1, "{text}");
        let start = text.find(BEGIN_MARKER).unwrap();
        let stop = text.find(END_MARKER).unwrap() + END_MARKER.len() + 1;
        (&text[..start], &text[start..stop], &text[stop..])
    }

    #[test]
    fn inserts_once_then_replaces_keeping_the_history_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("RESULTS.md");
        std::fs::write(&path, HISTORY).unwrap();
        let run = sample_run();
        let table = render_table(&sample_figures());
        update_results_md(&path, &run, &table, "Goal: **met** (0.42 ≥ 0.4).").unwrap();
        let first = std::fs::read_to_string(&path).unwrap();
        let (before, section, after) = parts(&first);
        assert_eq!(
            before,
            "# Benchmark results\n\nEvery figure here is a same-run comparison.\n\n"
        );
        assert!(after.starts_with("\n## 2026-11-25 — SMTP intake with fsync (issue 3)\n"));
        assert_eq!(format!("{before}{}", &after[1..]), HISTORY, "history changed");
        assert!(section.starts_with(&format!("{BEGIN_MARKER}\n## Latest full run\n")));
        for expected in [
            "- Date: 2026-11-26 09:41 UTC\n",
            "- Machine: Intel(R) Xeon(R) Processor, 2 CPUs (virtual), 23.5 GiB RAM, Linux 6.18\n",
            "- Command: `./x bench intake`\n",
            "- sessions: 20\n- messages per run: 20000\n",
            table.as_str(),
            "Goal: **met** (0.42 ≥ 0.4).",
            "![msg/s per scenario](results.png)",
        ] {
            assert!(section.contains(expected), "missing {expected:?} in\n{section}");
        }

        let mut second_run = run.clone();
        second_run.date = "2026-11-27 10:00 UTC".into();
        let mut figures = sample_figures();
        figures[2].msgs_per_sec = 15000.0;
        let second_table = render_table(&figures);
        update_results_md(&path, &second_run, &second_table, "").unwrap();
        let second = std::fs::read_to_string(&path).unwrap();
        let (before2, section2, after2) = parts(&second);
        assert_eq!(
            (before2, after2),
            (before, after),
            "history changed on replacement"
        );
        assert!(section2.contains("- Date: 2026-11-27 10:00 UTC\n"));
        assert!(!section2.contains("2026-11-26 09:41"));
        assert!(section2.contains("| 15000 |") && !section2.contains("| 12027 |"));
        assert!(!section2.contains("Goal:"));

        // The same input again gives the same file.
        update_results_md(&path, &second_run, &second_table, "").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), second);
        assert!(!dir.path().join("RESULTS.md.tmp").exists());
    }

    #[test]
    fn creates_a_missing_file_and_handles_files_without_sub_headings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("RESULTS.md");
        update_results_md(&path, &sample_run(), "| t |", "").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(&format!("# Benchmark results\n\n{BEGIN_MARKER}\n")));
        assert!(text.ends_with(&format!("{END_MARKER}\n")));

        let only_title = "# Results\nintro without a final newline";
        let spliced = splice(only_title, "SECTION\n").unwrap();
        assert_eq!(spliced, "# Results\nintro without a final newline\n\nSECTION\n");
        assert_eq!(
            splice("no heading\n", "SECTION\n").unwrap(),
            "SECTION\n\nno heading\n"
        );
        assert_eq!(
            splice("# A\n## B\n", "SECTION\n").unwrap(),
            "# A\nSECTION\n\n## B\n"
        );
    }

    #[test]
    fn refuses_a_damaged_section_and_leaves_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("RESULTS.md");
        for damaged in [
            format!("# R\n\n{BEGIN_MARKER}\n## Latest full run\n"),
            format!("# R\n\n{END_MARKER}\n{BEGIN_MARKER}\n"),
            format!("# R\n{BEGIN_MARKER}\n{END_MARKER}\n{BEGIN_MARKER}\n{END_MARKER}\n"),
        ] {
            std::fs::write(&path, &damaged).unwrap();
            let error = update_results_md(&path, &sample_run(), "| t |", "").unwrap_err();
            assert!(format!("{error:#}").contains("damaged"), "{error:#}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), damaged);
        }
        // Markers quoted in a code block are text, not the section.
        let quoted = format!("# R\n\n```\n{BEGIN_MARKER}\n```\n\n## Old\n");
        let spliced = splice(&quoted, &format!("{BEGIN_MARKER}\nnew\n{END_MARKER}\n")).unwrap();
        assert!(spliced.starts_with(&quoted[..quoted.find("## Old").unwrap()]));
        assert!(spliced.ends_with(&format!("{END_MARKER}\n\n## Old\n")));
    }

    #[test]
    fn the_real_results_file_takes_the_section() {
        let real = include_str!("../../RESULTS.md");
        let section = render_section(&sample_run(), "| t |", "");
        let once = splice(real, &section).unwrap();
        let twice = splice(&once, &section).unwrap();
        assert_eq!(once, twice);
        let (before, _, after) = parts(&once);
        assert!(before.starts_with("# Benchmark results\n"));
        assert!(
            !before.contains("\n## "),
            "the section comes before every sub-section"
        );
        if !real.contains(BEGIN_MARKER) {
            assert_eq!(format!("{before}{}", &after[1..]), real);
        }
    }

    #[test]
    fn inline_code_and_headings() {
        assert_eq!(code_span("./x bench intake"), "`./x bench intake`");
        assert_eq!(code_span("echo `date`"), "`` echo `date` ``");
        assert!(is_heading("# Benchmark results") && is_heading("## x") && is_heading("#"));
        assert!(!is_heading("#not") && !is_heading("####### seven") && !is_heading(" text"));
    }
}
