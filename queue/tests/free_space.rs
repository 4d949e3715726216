//! The free-space check that lets SMTP answer 452 before accepting DATA.

use penguin_queue::{Spool, SpoolOptions};

fn spool_with_minimum(dir: &std::path::Path, min_free_space: u64) -> Spool {
    let mut options = SpoolOptions::new(dir);
    options.min_free_space = min_free_space;
    Spool::open(options).expect("open")
}

#[test]
fn no_free_space_when_the_minimum_is_huge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = spool_with_minimum(dir.path(), u64::MAX / 2);
    assert!(!spool.has_free_space());
    assert!(!spool.has_free_space(), "cached answer");
}

#[test]
fn free_space_when_the_minimum_is_small() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(spool_with_minimum(dir.path(), 0).has_free_space());
    drop(spool_with_minimum(dir.path(), 0));
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(spool_with_minimum(dir.path(), 4096).has_free_space());
}
