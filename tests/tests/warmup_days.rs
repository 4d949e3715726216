//! Thirty simulated days of a warming source on an injected clock: the warm-up service judges each
//! finished day from the spool's counters (as delivery writes them) and moves the step — a full,
//! healthy day advances, a quiet day holds, a bounce storm steps back — until the source is warm. The
//! steps survive a restart (a new service on the same spool).

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use jiff::ToSpan;
use jiff::civil::Date;
use penguin_mta::clock::{ManualClock, SharedClock};
use penguin_mta::events::{Event, EventBus, EventKind, EventSink};
use penguin_mta::warmup::{Warmup, WarmupRow, count_outcomes};
use penguin_queue::{Counts, Spool, SpoolOptions};

/// A day's (delivered, deferred, bounced).
type Day = (u64, u64, u64);

#[derive(Default)]
struct Collect(Mutex<Vec<Event>>);

impl EventSink for Collect {
    fn emit(&self, event: &Event) {
        self.0.lock().expect("lock").push(event.clone());
    }
}

impl Collect {
    fn kinds(&self) -> Vec<(EventKind, Option<u32>)> {
        let events = self.0.lock().expect("lock");
        events.iter().map(|e| (e.kind, e.step)).collect()
    }
}

const CONFIG: &str = r#"
[[source]]
name = "ip9"
ip = "127.0.0.9"
warmup = { plan = "ramp", start = "2026-12-01" }

[[warmup.plan]]
name = "ramp"
daily = [50, 100, 200, 400, 800]
timezone = "America/New_York"
"#;

/// Local noon (EST, UTC-5) of `day`.
fn noon(day: Date) -> std::time::SystemTime {
    let seconds = day
        .at(12, 0, 0, 0)
        .in_tz("America/New_York")
        .expect("zoned")
        .timestamp()
        .as_second();
    UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).expect("after 1970"))
}

/// What delivery would have counted for ip9 × google on `day`.
fn record_day(spool: &Spool, day: Date, delivered: u64, deferred: u64, bounced: u64) {
    let mut counts = Counts::new();
    let kinds = std::iter::repeat_n("delivered", delivered as usize)
        .chain(std::iter::repeat_n("deferred", deferred as usize))
        .chain(std::iter::repeat_n("bounced", bounced as usize));
    count_outcomes(&mut counts, "ip9", "google", day, kinds);
    spool.add_counts(&counts).expect("counts");
}

fn google(rows: &[WarmupRow]) -> WarmupRow {
    rows.iter()
        .find(|row| row.source == "ip9" && row.provider == "google")
        .cloned()
        .unwrap_or_else(|| panic!("no google row: {rows:?}"))
}

fn service(
    config: &penguin_config::Config,
    spool: &Arc<Spool>,
    clock: &SharedClock,
    events: &Arc<Collect>,
) -> Warmup {
    let bus = EventBus::new(vec![Arc::clone(events) as Arc<dyn EventSink>]);
    let driver = Arc::new(tokio::sync::Notify::new());
    let scheduler = penguin_mta::delivery::setup::scheduler(config, bus.clone(), driver).expect("scheduler");
    Warmup::load(config, Arc::clone(spool), scheduler, bus, Arc::clone(clock)).expect("warm-up")
}

#[test]
fn thirty_days_ramp_hold_on_a_quiet_day_step_back_after_a_bounce_storm_then_warm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Arc::new(Spool::open(SpoolOptions::new(dir.path().join("spool"))).expect("spool"));
    let config = penguin_config::Config::from_toml_str(CONFIG).expect("config");
    let start: Date = "2026-12-01".parse().expect("date");
    let clock = ManualClock::new(noon(start));
    let shared: SharedClock = clock.clone();
    let events = Arc::new(Collect::default());
    let mut warmup = service(&config, &spool, &shared, &events);
    let rows = warmup.status(None);
    let other = rows.iter().find(|row| row.provider == "other").expect("other");
    assert_eq!((other.step, other.cap_today), (Some(1), Some(50)), "{rows:?}");

    // (delivered, deferred, bounced) per day, and the step (1-based, None = warm) the next day.
    let days: [(Day, Option<u32>, &str); 9] = [
        ((50, 0, 0), Some(2), "warming"),
        ((100, 0, 0), Some(3), "warming"),
        ((30, 0, 0), Some(3), "held"),            // quiet: 30 of 200
        ((150, 10, 40), Some(2), "stepped_back"), // bounces 20% > 5%
        ((100, 0, 0), Some(3), "warming"),
        ((0, 0, 0), Some(3), "warming"),   // nothing sent at all: no change
        ((195, 5, 0), Some(4), "warming"), // 2.5% deferred: healthy
        ((400, 0, 0), Some(5), "warming"),
        ((800, 0, 0), None, "warm"),
    ];
    let mut day = start;
    for (index, ((delivered, deferred, bounced), step, state)) in days.iter().enumerate() {
        record_day(&spool, day, *delivered, *deferred, *bounced);
        day = day.checked_add(1.day()).expect("next day");
        clock.set(noon(day));
        warmup.evaluate_all().expect("evaluate");
        let row = google(&warmup.status(None));
        assert_eq!(row.step, *step, "after day {index}: {row:?}");
        assert_eq!(row.state, *state, "after day {index}: {row:?}");
        if index == 0 {
            // A restart keeps the step (and judges nothing twice).
            warmup = service(&config, &spool, &shared, &events);
            assert_eq!(google(&warmup.status(None)).step, Some(2));
        }
    }
    // The rest of the thirty days: warm stays warm, whatever is sent.
    for _ in days.len()..30 {
        record_day(&spool, day, 5000, 0, 0);
        day = day.checked_add(1.day()).expect("next day");
        clock.set(noon(day));
        warmup.evaluate_all().expect("evaluate");
    }
    let row = google(&warmup.status(None));
    assert_eq!(
        (row.step, row.cap_today, row.state.as_str()),
        (None, None, "warm")
    );

    let kinds = events.kinds();
    let count = |kind: EventKind| kinds.iter().filter(|(k, _)| *k == kind).count();
    assert_eq!(count(EventKind::WarmupAdvanced), 6, "{kinds:?}");
    assert_eq!(count(EventKind::WarmupHeld), 1, "{kinds:?}");
    assert_eq!(count(EventKind::WarmupAlert), 1, "{kinds:?}");
    assert_eq!(count(EventKind::WarmupSteppedBack), 1, "{kinds:?}");
    assert!(
        kinds.contains(&(EventKind::WarmupSteppedBack, Some(2))),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last(),
        Some(&(EventKind::WarmupAdvanced, None)),
        "the last advance makes it warm (no step): {kinds:?}"
    );
}
