use std::time::Duration;

use penguin_queue::Recipient;

use super::*;

const MINUTE: u64 = 60_000;

fn schedule() -> RetrySchedule {
    RetrySchedule {
        intervals: vec![Duration::from_secs(60), Duration::from_secs(300)],
        max_age: Duration::from_secs(3600),
        jitter_percent: 0,
    }
}

fn envelope(recipients: &[&str]) -> Envelope {
    Envelope {
        tenant: "acme".into(),
        campaign: "c".into(),
        pool: String::new(),
        sender: "news@acme.example".into(),
        recipients: recipients
            .iter()
            .map(|a| Recipient::queued(a.to_string()))
            .collect(),
        size: 100,
        received_at_ms: 1_000_000,
        next_attempt_at_ms: 1_000_000,
        smtputf8: false,
        eight_bit: false,
        warmup_priority: false,
    }
}

fn reply(code: u16, text: &str) -> Attempt {
    let reply = RemoteReply {
        code,
        lines: vec![text.to_string()],
    };
    Attempt::from_reply(
        &reply,
        &ConnectionInfo {
            mx: Some("mx.example".into()),
            ..Default::default()
        },
    )
}

#[test]
fn mixed_outcomes_set_states_and_schedule_the_retry() {
    let mut env = envelope(&["a@x.example", "b@x.example", "c@x.example"]);
    let attempts = vec![
        (0, reply(250, "2.0.0 Ok")),
        (
            1,
            reply(
                550,
                "5.1.1 <b@x.example>: Recipient address rejected: User unknown",
            ),
        ),
        (2, reply(451, "4.3.0 try later")),
    ];
    let applied = apply(&mut env, attempts, 1_000_000 + MINUTE, &schedule(), 0.5);
    let states: Vec<_> = env.recipients.iter().map(|r| r.state).collect();
    assert_eq!(
        states,
        [
            RecipientState::Delivered,
            RecipientState::Bounced,
            RecipientState::Queued
        ]
    );
    assert!(env.recipients.iter().all(|r| r.attempts == 1));
    let kinds: Vec<_> = applied.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Delivery,
            EventKind::Bounce,
            EventKind::TransientFailure
        ]
    );
    assert_eq!(applied.failed, [1]);
    assert_eq!(
        env.next_attempt_at_ms,
        1_000_000 + 2 * MINUTE,
        "first retry interval after now"
    );
    assert_eq!(
        applied.events[1].attempt.class(),
        Some(BounceClass::InvalidRecipient)
    );
    assert_eq!(
        applied.events[1].attempt.response.enhanced.as_deref(),
        Some("5.1.1")
    );
}

#[test]
fn transient_failure_past_max_age_expires_every_queued_recipient() {
    let mut env = envelope(&["a@x.example", "b@y.example"]);
    let late = 1_000_000 + 3_600_000;
    let applied = apply(
        &mut env,
        vec![(0, reply(451, "4.4.1 no answer"))],
        late,
        &schedule(),
        0.5,
    );
    assert_eq!(env.recipients[0].state, RecipientState::Expired);
    assert_eq!(
        env.recipients[1].state,
        RecipientState::Expired,
        "not attempted now, still expires"
    );
    assert_eq!(applied.failed, [0, 1]);
    let kinds: Vec<_> = applied.events.iter().map(|e| (e.index, e.kind)).collect();
    assert_eq!(kinds, [(0, EventKind::Expiration), (1, EventKind::Expiration)]);
    assert_eq!(
        applied.events[0].attempt.response.text, "4.4.1 no answer",
        "the last answer is kept"
    );
    assert_eq!(
        applied.events[0].attempt.outcome,
        Outcome::Permanent(BounceClass::MessageExpired)
    );
}

#[test]
fn all_delivered_needs_no_retry() {
    let mut env = envelope(&["a@x.example"]);
    let applied = apply(&mut env, vec![(0, reply(250, "ok"))], 2_000_000, &schedule(), 0.5);
    assert_eq!(env.recipients[0].state, RecipientState::Delivered);
    assert_eq!(env.next_attempt_at_ms, 1_000_000, "unchanged");
    assert!(applied.failed.is_empty());
}

#[test]
fn network_failures_are_classified() {
    let at = ConnectionInfo::default();
    let refused = Attempt::from_failure(NetworkFailure::ConnectionRefused, "127.0.0.1:25: refused", &at);
    assert!(matches!(refused.outcome, Outcome::Transient(_)), "{refused:?}");
    assert_eq!(refused.response.code, 0);
    let null_mx = Attempt::from_failure(NetworkFailure::NullMx, "null MX", &at);
    assert_eq!(null_mx.outcome, Outcome::Permanent(BounceClass::BadDomain));
    assert_eq!(null_mx.response.enhanced.as_deref(), Some("5.1.10"));
    let after_data = SessionError::Network {
        failure: NetworkFailure::DisconnectedAfterData,
        detail: "eof".into(),
    };
    assert!(matches!(
        Attempt::from_error(&after_data, &at).outcome,
        Outcome::Transient(_)
    ));
}
