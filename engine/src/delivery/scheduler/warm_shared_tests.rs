//! Two simulated nodes sharing a warming source's cap through the store's arithmetic (the Lua
//! script's: grant at most the open capacity minus what is claimed).

use super::*;

/// 2027-01-14 12:00 UTC (before the helpers' T0, so that the items do not expire).
const NOON: u64 = 1_799_928_000 * S;

/// Source ip9 warms on a plan of 30 a day per provider; its overflow waits (`hold`).
const WARMING: &str = r#"
[[source]]
name = "ip9"
ip = "127.0.0.9"
[[warmup.plan]]
name = "first"
daily = [30, 60]
overflow = "hold"
"#;

/// ip2 is warm, ip9 warms on the same plan, its overflow through the pool (ip2).
const POOLED: &str = r#"
[[source]]
name = "ip2"
ip = "127.0.0.2"
[[source]]
name = "ip9"
ip = "127.0.0.9"
[[warmup.plan]]
name = "first"
daily = [30, 60]
"#;

/// A node: the scheduler over `toml` with ip9 warming today (overflow `overflow`) and `count` items
/// queued for one site.
fn node_of(toml: &str, overflow: WarmOverflow, (shared, store_up): (bool, bool), count: u32) -> Scheduler {
    let config = Config::from_toml_str(toml).expect("config");
    let plan = crate::warmup_cli::plan_from_config(&config.warmup.plan[0]).expect("plan");
    let (mut s, _) = scheduler(toml);
    if shared {
        s.enable_shared_limits(2, Arc::new(Notify::new()));
        s.set_shared_store(store_up, 2);
        s.enable_shared_warmup(Arc::new(Notify::new()));
    }
    let source = s.settings().source_id("ip9").expect("ip9");
    let warmup = SourceWarmup {
        day: plan.day_of(NOON),
        plan: Arc::new(plan),
        overflow,
        steps: HashMap::new(),
        sent_today: HashMap::new(),
        closed_until_us: None,
    };
    s.set_source_warmup(source, Some(warmup), NOON);
    for n in 0..count {
        add(&mut s, n, "acme", "c", "example.com", "mx.example.com", NOON);
    }
    s
}

/// A node with only the warming ip9, whose overflow waits.
fn node(shared: bool, store_up: bool, count: u32) -> Scheduler {
    node_of(WARMING, WarmOverflow::Hold, (shared, store_up), count)
}

/// Runs the nodes for `seconds` (a millisecond per step), answering their claims as the store's
/// script does; returns what each sent.
fn run(nodes: &mut [Scheduler], store: &mut HashMap<String, u64>, seconds: u64) -> Vec<u64> {
    run_by_source(nodes, store, seconds)
        .iter()
        .map(|by_source| by_source.get("ip9").copied().unwrap_or(0))
        .collect()
}

/// [`run`], with each node's sends per source.
fn run_by_source(
    nodes: &mut [Scheduler],
    store: &mut HashMap<String, u64>,
    seconds: u64,
) -> Vec<HashMap<String, u64>> {
    let mut conns: Vec<Vec<ConnId>> = vec![Vec::new(); nodes.len()];
    let mut sent = vec![HashMap::new(); nodes.len()];
    let mut now = NOON;
    while now < NOON + seconds * S {
        for (i, s) in nodes.iter_mut().enumerate() {
            for claim in s.take_warm_claims() {
                let used = store.entry(claim.name.clone()).or_default();
                let granted = claim.want.min(claim.open.saturating_sub(*used));
                *used += granted;
                let left = claim.open.saturating_sub(*used);
                s.warm_claim_answered(&claim, Some(WarmGrant { granted, left }), now);
            }
            conns[i].extend(s.poll(now).into_iter().map(|open| open.conn));
            for &conn in &conns[i] {
                while let Next::Send(work) = s.next(conn, now) {
                    let source = s.lanes[work.lane.0 as usize].source;
                    *sent[i]
                        .entry(s.settings().source_name(source).to_string())
                        .or_default() += 1;
                }
            }
        }
        now += 1_000;
    }
    sent
}

#[test]
fn two_nodes_share_a_warming_sources_cap_and_each_keeps_to_half_without_the_store() {
    let mut store = HashMap::new();
    let mut nodes = [node(true, true, 100), node(true, true, 100)];
    let sent = run(&mut nodes, &mut store, 3);
    assert_eq!(
        sent.iter().sum::<u64>(),
        30,
        "the fleet sends the cap of 30: {sent:?}"
    );
    assert!(sent.iter().all(|&n| n > 0), "both nodes send: {sent:?}");
    assert_eq!(store.values().sum::<u64>(), 30, "claimed: {store:?}");

    let mut alone = [node(true, false, 100), node(true, false, 100)];
    let sent = run(&mut alone, &mut HashMap::new(), 3);
    assert_eq!(sent, vec![15, 15], "without the store each node sends its share");

    let mut unshared = [node(false, false, 100), node(false, false, 100)];
    let sent = run(&mut unshared, &mut HashMap::new(), 3);
    assert_eq!(sent, vec![30, 30], "without [cluster] each node counts its own");
}

#[test]
fn a_claim_is_asked_only_for_queued_mail_and_at_most_a_tenth_of_the_cap() {
    let mut s = node(true, true, 2);
    assert!(
        s.take_warm_claims().is_empty(),
        "nothing asked before the lane is looked at"
    );
    s.poll(NOON);
    let claims = s.take_warm_claims();
    assert_eq!(claims.len(), 1, "{claims:?}");
    assert_eq!((claims[0].want, claims[0].open), (2, 30), "{claims:?}");
    assert!(claims[0].name.starts_with("ip9/other/"), "{claims:?}");
    s.poll(NOON + 1_000);
    assert!(s.take_warm_claims().is_empty(), "one claim out at a time");

    let mut big = node(true, true, 100);
    big.poll(NOON);
    let claims = big.take_warm_claims();
    assert_eq!(claims[0].want, 3, "a tenth of the cap of 30: {claims:?}");
    big.warm_claim_answered(&claims[0], None, NOON);
    big.poll(NOON + 2 * S);
    assert_eq!(
        big.take_warm_claims().len(),
        1,
        "asked again after a failed answer"
    );
}

#[test]
fn mail_over_the_fleets_room_goes_to_the_pools_other_source() {
    let mut store = HashMap::new();
    let mut nodes = [
        node_of(POOLED, WarmOverflow::Pool, (true, true), 100),
        node_of(POOLED, WarmOverflow::Pool, (true, true), 100),
    ];
    let sent = run_by_source(&mut nodes, &mut store, 3);
    let of = |source: &str| {
        sent.iter()
            .map(|node| node.get(source).copied().unwrap_or(0))
            .sum::<u64>()
    };
    assert!(
        (27..=30).contains(&of("ip9")),
        "the warming ip9 sends at most its cap for the fleet: {sent:?}"
    );
    assert_eq!(of("ip9") + of("ip2"), 200, "nothing is left waiting: {sent:?}");
}

#[test]
fn when_the_store_goes_away_mail_over_the_nodes_share_goes_to_the_pools_other_source() {
    let mut s = node_of(POOLED, WarmOverflow::Pool, (true, true), 100);
    let ip9 = s.settings().source_id("ip9").expect("ip9");
    let provider = s.lanes[0].provider;
    let (high, normal) = s.group(ip9, provider).counts();
    assert!(
        high + normal > 15,
        "ip9 took more than the share while the store answered"
    );
    s.set_shared_store(false, 2);
    let (high, normal) = s.group(ip9, provider).counts();
    assert!(
        high + normal <= 15,
        "ip9 keeps its share of 30 ÷ 2 at most: {}",
        high + normal
    );
    let sent = run_by_source(std::slice::from_mut(&mut s), &mut HashMap::new(), 3);
    assert_eq!(sent[0].get("ip9").copied().unwrap_or(0), 15, "{sent:?}");
    assert_eq!(
        sent[0].values().sum::<u64>(),
        100,
        "nothing is left waiting: {sent:?}"
    );
}
