//! Measures the recovery scan against a raw RocksDB scan of the same envelopes.
//!
//! `cargo run --release -p penguin-queue --example recovery_bench -- [MESSAGES]` (default 200,000). Fills a
//! temporary spool (sync off), then alternates raw scans and `Spool::open` three times and prints the best
//! of each and their ratio (recovery speed / raw scan speed; the target is at least 0.5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use penguin_queue::{Envelope, IdGenerator, NewMessage, Recipient, Spool, SpoolOptions};

fn message(ids: &IdGenerator, n: u64) -> NewMessage {
    let id = ids.next_id();
    let recipients =
        (0..1 + n % 3).map(|r| Recipient::queued(format!("user{n}.{r}@domain{}.example", n % 97)));
    let envelope = Envelope {
        tenant: format!("tenant{}", n % 4),
        campaign: format!("campaign-{}", n % 16),
        pool: String::new(),
        sender: "bounces@sender.example".into(),
        recipients: recipients.collect(),
        size: 100,
        received_at_ms: id.created_at_micros() / 1000,
        next_attempt_at_ms: id.created_at_micros() / 1000,
        smtputf8: false,
        eight_bit: false,
        warmup_priority: false,
    };
    NewMessage {
        id,
        envelope,
        body: vec![b'x'; 100],
    }
}

fn fill(path: &std::path::Path, count: u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut options = SpoolOptions::new(path);
    options.sync = false;
    let spool = Arc::new(Spool::open(options)?);
    let ids = Arc::new(IdGenerator::new());
    let threads = 8;
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (spool, ids) = (Arc::clone(&spool), Arc::clone(&ids));
            scope.spawn(move || {
                for n in (t..count).step_by(threads as usize) {
                    if let Err(error) = spool.enqueue_blocking(message(&ids, n)) {
                        eprintln!("enqueue failed: {error}");
                        return;
                    }
                }
            });
        }
    });
    let spool = Arc::into_inner(spool).ok_or("spool still shared")?;
    spool.flush()?;
    spool.close()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200_000);
    let dir = std::env::temp_dir().join(format!("penguin-recovery-bench-{}", std::process::id()));
    let started = Instant::now();
    fill(&dir, count)?;
    println!("filled {count} messages in {:?}", started.elapsed());
    let (mut best_raw, mut best_recovery) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        let (raw, scanned) = penguin_queue::raw_scan(&dir)?;
        best_raw = best_raw.min(raw);
        let started = Instant::now();
        let spool = Spool::open(SpoolOptions::new(&dir))?;
        let open = started.elapsed();
        let report = spool.recovery();
        println!(
            "raw scan {raw:?} ({scanned} records); open {open:?}, recovery scan {:?}: {} messages, {} recipients",
            report.duration, report.messages, report.recipients
        );
        best_recovery = best_recovery.min(open);
        spool.close()?;
    }
    let ratio = best_raw.as_secs_f64() / best_recovery.as_secs_f64();
    println!("best raw {best_raw:?}, best open-with-recovery {best_recovery:?}, speed ratio {ratio:.2}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
