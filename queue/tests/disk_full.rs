//! A full disk: enqueue fails with NoSpace, the spool keeps running and works again once space is freed.

use std::process::Command;
use std::time::{Duration, Instant};

use penguin_queue::{Envelope, IdGenerator, NewMessage, Recipient, Spool, SpoolError, SpoolOptions};

fn message(ids: &IdGenerator, body_len: usize) -> NewMessage {
    let id = ids.next_id();
    let envelope = Envelope {
        tenant: "t".into(),
        campaign: "c".into(),
        pool: String::new(),
        sender: String::new(),
        recipients: vec![Recipient::queued("a@example.com")],
        size: body_len as u64,
        received_at_ms: 1,
        next_attempt_at_ms: 1,
        smtputf8: false,
        eight_bit: false,
        warmup_priority: false,
    };
    // Incompressible, so that LZ4 does not make room.
    let mut state = id.sequence() as u64 | 1;
    let body = (0..body_len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    NewMessage { id, envelope, body }
}

/// Mounts a 96 MiB tmpfs with a 72 MiB ballast file, fills the rest through the spool, removes the
/// ballast, and checks that the spool reports NoSpace while full and accepts messages again afterwards.
/// Needs root (CAP_SYS_ADMIN) for the mount; the README's test command and CI run as root.
#[test]
fn disk_full_reports_no_space_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = dir.path().join("fs");
    std::fs::create_dir(&mount).expect("mkdir");
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96m", "tmpfs"])
        .arg(&mount)
        .status();
    assert!(
        status.map(|s| s.success()).unwrap_or(false),
        "mounting a tmpfs failed: this test needs root (CAP_SYS_ADMIN) to create a real full disk"
    );
    let result = std::panic::catch_unwind(|| run(&mount));
    let _ = Command::new("umount").arg(&mount).status();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn run(mount: &std::path::Path) {
    let ballast = mount.join("ballast");
    std::fs::write(&ballast, vec![0u8; 72 * 1024 * 1024]).expect("ballast");
    let spool = Spool::open(SpoolOptions::new(mount.join("spool"))).expect("open");
    let ids = IdGenerator::new();
    let mut accepted = Vec::new();
    let error = loop {
        let message = message(&ids, 256 * 1024);
        let id = message.id;
        match spool.enqueue_blocking(message) {
            Ok(()) => accepted.push(id),
            Err(error) => break error,
        }
        assert!(accepted.len() < 1000, "the disk never filled");
    };
    assert!(
        matches!(error, SpoolError::NoSpace),
        "{error:?} after {} messages",
        accepted.len()
    );
    let again = spool.enqueue_blocking(message(&ids, 1024));
    assert!(
        matches!(again, Err(SpoolError::NoSpace)),
        "still full, writer still running: {again:?}"
    );

    // RocksDB resumes by itself once the free space exceeds its largest write buffer (64 MiB); its
    // space manager checks every 5 seconds. Poll with a short backoff, bounded.
    std::fs::remove_file(&ballast).expect("free space");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match spool.enqueue_blocking(message(&ids, 1024)) {
            Ok(()) => break,
            Err(error) => assert!(
                Instant::now() < deadline,
                "no recovery after freeing space: {error:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for id in &accepted {
        assert!(
            spool.read_body(*id).expect("read").is_some(),
            "{id} was acknowledged before the disk filled"
        );
    }
}
