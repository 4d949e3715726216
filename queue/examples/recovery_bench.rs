//! Measures the recovery scan against a raw RocksDB scan of the same envelopes.
//!
//! `cargo run --release -p penguin-queue --example recovery_bench -- [MESSAGES]` (default 200,000). Fills a
//! temporary spool (sync off), then alternates raw scans and `Spool::open` three times and prints the best
//! of each and their ratio (recovery speed / raw scan speed; the target is at least 0.5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use penguin_queue::{Envelope, IdGenerator, NewMessage, Recipient, Spool, SpoolOptions};
use rocksdb::{DB, Options, ReadOptions};

fn message(ids: &IdGenerator, n: u64) -> NewMessage {
    let id = ids.next_id();
    let recipients =
        (0..1 + n % 3).map(|r| Recipient::queued(format!("user{n}.{r}@domain{}.example", n % 97)));
    let envelope = Envelope {
        tenant: format!("tenant{}", n % 4),
        campaign: format!("campaign-{}", n % 16),
        sender: "bounces@sender.example".into(),
        recipients: recipients.collect(),
        size: 100,
        received_at_ms: id.created_at_micros() / 1000,
        next_attempt_at_ms: id.created_at_micros() / 1000,
        smtputf8: false,
        eight_bit: false,
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

/// Iterates every envelope record, touching keys and values, as fast as RocksDB allows.
fn raw_scan(path: &std::path::Path) -> Result<(Duration, u64), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let db = DB::open_cf_for_read_only(&Options::default(), path, ["envelopes", "bodies"], false)?;
    let cf = db.cf_handle("envelopes").ok_or("no envelopes column family")?;
    let mut read = ReadOptions::default();
    read.fill_cache(false);
    read.set_readahead_size(4 * 1024 * 1024);
    let mut iter = db.raw_iterator_cf_opt(cf, read);
    iter.seek_to_first();
    let (mut count, mut checksum) = (0u64, 0u64);
    while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
        count += 1;
        checksum = checksum.wrapping_add(u64::from(key[key.len() - 1]) + value.len() as u64);
        iter.next();
    }
    iter.status()?;
    std::hint::black_box(checksum);
    Ok((started.elapsed(), count))
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
        let (raw, scanned) = raw_scan(&dir)?;
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
