//! A simulated hour of one ready queue: GCRA pacing, reply rules, trigger counters, the adaptive loop
//! and a site suspension working together, with a scripted remote server and no real time.

use super::*;

const SECOND: u64 = 1_000_000;
const MINUTE: u64 = 60 * SECOND;
/// The simulation's epoch: an arbitrary real-looking instant.
const T0: u64 = 1_700_000_000 * SECOND;

/// What the scripted remote answers to a send at `at` (relative to T0): `None` = accepted.
fn remote_reply(at: u64, single_throttle_sent: &mut bool) -> Option<(u16, &'static str, &'static str)> {
    let gmail_throttle = (
        421,
        "4.7.28",
        "[192.0.2.1] Our system has detected an unusual rate of unsolicited mail originating from your IP \
         address. To protect our users from spam, mail sent from your IP address has been temporarily \
         rate limited.",
    );
    if (10 * MINUTE..12 * MINUTE).contains(&at) {
        return Some(gmail_throttle); // a two-minute storm
    }
    if at >= 30 * MINUTE && !*single_throttle_sent {
        *single_throttle_sent = true;
        return Some(gmail_throttle); // one isolated throttle
    }
    if (50 * MINUTE..51 * MINUTE).contains(&at) {
        return Some((451, "4.3.0", "Please slow down")); // matched by a configured counting rule
    }
    None
}

/// The queue under test and what happened to it.
struct Queue {
    /// Pacing state.
    gcra: Gcra,
    /// Closed-loop state.
    adaptive: Adaptive,
    /// Observed rate (for `on_throttle`).
    window: RateWindow,
    /// One counter per rule (index = rule index).
    counters: Vec<TriggerCounter>,
    /// End of the site's suspension (absolute µs), 0 = none.
    suspended_until: u64,
    /// Send times relative to T0.
    sends: Vec<u64>,
}

impl Queue {
    /// Handles the remote's reply to a send at `now` (absolute).
    fn on_reply(&mut self, rules: &[Rule], reply: (u16, &str, &str), now: u64, settings: &AdaptiveSettings) {
        let (code, enhanced, text) = reply;
        let line = reply_line(code, Some(enhanced), text);
        let lower = lowercase_reply(code, Some(enhanced), text);
        let Some((index, rule)) = first_match(rules, "google", &line, &lower) else {
            return;
        };
        if !self.counters[index].hit(&rule.trigger, now) {
            return;
        }
        match rule.action {
            RuleAction::Reduce { factor } => {
                let observed = Rate::try_new(self.window.per_second(now)).unwrap_or(settings.min_rate);
                self.adaptive
                    .on_throttle(configured(), observed, factor, now, settings);
            }
            RuleAction::Suspend { duration_us, .. } => self.suspended_until = now + duration_us,
            RuleAction::Bounce | RuleAction::Retry { .. } => {}
        }
    }
}

/// The queue's configured rate: 60 per minute.
fn configured() -> Option<Rate> {
    Rate::new(60, MINUTE)
}

/// Deterministic wake-up lateness of the k-th send: up to half an interval.
fn lateness(k: u64, interval: u64) -> u64 {
    (k.wrapping_mul(7919) % 1001) * interval / 2002
}

#[test]
fn an_hour_of_throttling_replies() {
    let settings = AdaptiveSettings {
        min_rate: Rate::try_new(0.1).expect("valid"),
        ..AdaptiveSettings::default()
    };
    let slow_down = Rule {
        name: "slow-down".to_string(),
        provider: None,
        matcher: ReplyMatcher::contains("slow down"),
        action: RuleAction::Suspend {
            duration_us: 10 * MINUTE,
            scope: RuleScope::Site,
        },
        trigger: Trigger::Count {
            hits: 3,
            window_us: 60 * MINUTE,
        },
    };
    let rules = effective_rules(builtin_rules(), vec![slow_down], true);
    // (probe time, expected effective rate per second)
    let probes: Vec<(u64, f64)> = vec![
        (5 * MINUTE, 1.0),
        (10 * MINUTE + 30 * SECOND, 0.5),  // first reply of the storm: halved
        (11 * MINUTE + 30 * SECOND, 0.25), // one cooldown later: halved again
        (16 * MINUTE, 0.25),               // storm over at 12:00, no step before 17:00
        (19 * MINUTE, 0.35),               // +0.1 (a tenth of 1/s) per 5 quiet minutes
        (24 * MINUTE, 0.45),
        (29 * MINUTE, 0.55),
        (31 * MINUTE, 0.275), // the isolated throttle at 30:00
        (38 * MINUTE, 0.375),
        (43 * MINUTE, 0.475),
        (48 * MINUTE, 0.575),
        (53 * MINUTE, 0.675), // suspended, but still recovering
        (58 * MINUTE, 0.775),
    ];
    let mut queue = Queue {
        gcra: Gcra::default(),
        adaptive: Adaptive::default(),
        window: RateWindow::default(),
        counters: vec![TriggerCounter::default(); rules.len()],
        suspended_until: 0,
        sends: Vec::new(),
    };
    let mut single_throttle_sent = false;
    let mut next_probe = 0;
    let mut planned_send: Option<u64> = None;
    let mut now = T0;
    loop {
        let rate = queue
            .adaptive
            .effective(configured())
            .expect("configured queue is limited");
        let k = queue.sends.len() as u64;
        let send_at = *planned_send.get_or_insert_with(|| {
            queue.gcra.earliest_us(now).max(queue.suspended_until) + lateness(k, rate.interval_us())
        });
        let timer_at = queue.adaptive.next_timer_us().unwrap_or(u64::MAX);
        let probe_at = probes.get(next_probe).map_or(u64::MAX, |&(at, _)| T0 + at);
        now = send_at.min(timer_at).min(probe_at);
        if now >= T0 + 60 * MINUTE {
            break;
        }
        if now == probe_at {
            let (at, expected) = probes[next_probe];
            let got = rate.per_second();
            assert!(
                (got - expected).abs() < 1e-9,
                "at {} s: {got}/s, expected {expected}/s",
                at / SECOND
            );
            next_probe += 1;
        } else if now == timer_at {
            queue.adaptive.on_timer(configured(), now, &settings);
        } else {
            planned_send = None;
            queue.gcra.take(rate, now);
            queue.window.record(now);
            queue.sends.push(now - T0);
            if let Some(reply) = remote_reply(now - T0, &mut single_throttle_sent) {
                queue.on_reply(&rules, reply, now, &settings);
            }
        }
    }
    assert_eq!(next_probe, probes.len(), "every probe ran");
    let sent_between = |from: u64, to: u64| queue.sends.iter().filter(|&&t| t >= from && t < to).count();
    // Unthrottled: 60 per minute (the first send at 0).
    assert!((599..=601).contains(&sent_between(0, 10 * MINUTE)));
    // After the storm at 0.25/s: 72.5 in the 290 s before the first recovery step.
    let slow = sent_between(12 * MINUTE, 16 * MINUTE + 50 * SECOND);
    assert!((71..=74).contains(&slow), "{slow} sends at 0.25/s");
    // The third "slow down" reply suspended the site for 10 minutes: nothing more this hour.
    assert_eq!(sent_between(50 * MINUTE + 10 * SECOND, 60 * MINUTE), 0);
    assert!(queue.suspended_until > T0 + 60 * MINUTE);
}
