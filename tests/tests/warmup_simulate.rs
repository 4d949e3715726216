//! `penguin-mta warmup simulate`, run as the real binary: a plan's ramp from a config file (JSON and
//! tables), and the clear errors for a plan that does not exist (in a file, in the embedded default).

use std::path::Path;
use std::process::Output;

use penguin_tests::binary;
use serde_json::{Value, json};

/// The binary under test.
const EXE: &str = env!("CARGO_BIN_EXE_penguin-mta-e2e");

/// A config whose only non-default part is one warm-up plan.
const CONFIG: &str = r#"
[[warmup.plan]]
name = "standard"
daily = [50, 100, 200]
provider_daily = { microsoft = [20, 40] }
hours = "08:00-20:00"
timezone = "America/New_York"
"#;

/// Runs the binary with `args`.
async fn cli(args: &[&str]) -> Output {
    binary::run_cli(EXE, args, None).await
}

/// Writes [`CONFIG`] into `dir` and returns its path as an argument.
fn write_config(dir: &Path) -> String {
    let path = dir.join("penguin.toml");
    std::fs::write(&path, CONFIG).expect("write config");
    path.to_str().expect("utf-8 path").to_owned()
}

/// Asserts success and returns stdout.
fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "warmup simulate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_prints_the_json_ramp_of_each_provider() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    let args = [
        "warmup",
        "simulate",
        "--plan",
        "standard",
        "--config",
        &config,
        "--days",
        "5",
        "--daily-volume",
        "1000",
        "--start",
        "2026-12-01",
        "--json",
    ];
    let rows: Value = serde_json::from_str(&stdout_of(&cli(&args).await)).expect("JSON");
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 10, "two ramps × 5 days: {rows:?}");
    let ramp = |providers: &str| -> Vec<Value> {
        rows.iter()
            .filter(|row| row["providers"] == providers)
            .cloned()
            .collect()
    };
    let row = |day: u32, date: &str, providers: &str, step: Value, cap: Value, sent: u64| {
        json!({"day": day, "date": date, "providers": providers, "step": step, "cap": cap,
               "sent": sent, "overflow": 1000 - sent})
    };
    assert_eq!(
        ramp("others"),
        [
            row(1, "2026-12-01", "others", json!(1), json!(50), 50),
            row(2, "2026-12-02", "others", json!(2), json!(100), 100),
            row(3, "2026-12-03", "others", json!(3), json!(200), 200),
            row(4, "2026-12-04", "others", Value::Null, Value::Null, 1000),
            row(5, "2026-12-05", "others", Value::Null, Value::Null, 1000),
        ]
    );
    assert_eq!(
        ramp("microsoft")[..3],
        [
            row(1, "2026-12-01", "microsoft", json!(1), json!(20), 20),
            row(2, "2026-12-02", "microsoft", json!(2), json!(40), 40),
            row(3, "2026-12-03", "microsoft", Value::Null, Value::Null, 1000),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_under_min_fill_stalls_and_tables_show_each_ramp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    // 70 a day: 0.8 × 100 = 80 is never reached, the others ramp stays on step 2.
    let args = [
        "warmup",
        "simulate",
        "--plan",
        "standard",
        "--config",
        &config,
        "--days",
        "4",
        "--daily-volume",
        "70",
        "--start",
        "2026-12-01",
    ];
    let text = stdout_of(&cli(&args).await);
    assert!(text.contains("\nmicrosoft\n"), "{text}");
    assert!(text.contains("\nothers\n"), "{text}");
    let others = text.split("\nothers\n").nth(1).expect("others table");
    let lines: Vec<Vec<&str>> = others
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["DAY", "DATE", "STEP", "CAP", "SENT", "OVERFLOW"]);
    assert_eq!(lines[1], ["1", "2026-12-01", "1", "50", "50", "20"]);
    assert_eq!(lines[4], ["4", "2026-12-04", "2", "100", "70", "0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_plan_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    let output = cli(&["warmup", "simulate", "--plan", "fast", "--config", &config]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("no [[warmup.plan]] named fast in {config}")),
        "{stderr}"
    );
    // The embedded default config has no plans.
    let output = cli(&["warmup", "simulate", "--plan", "standard"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no [[warmup.plan]] named standard in the embedded default config"),
        "{stderr}"
    );
    // A bad --start names the flag.
    let output = cli(&[
        "warmup", "simulate", "--plan", "standard", "--config", &config, "--start", "12/01",
    ])
    .await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--start \"12/01\""));
}
