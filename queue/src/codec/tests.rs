use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn sample(recipients: Vec<Recipient>) -> Envelope {
    Envelope {
        tenant: "acme".into(),
        campaign: "spring-sale".into(),
        pool: String::new(),
        sender: "bounces@acme.example".into(),
        recipients,
        size: 5_120,
        received_at_ms: 1_764_000_000_000,
        next_attempt_at_ms: 1_764_000_000_000,
        smtputf8: false,
        eight_bit: false,
        warmup_priority: false,
    }
}

fn table() -> Vec<Envelope> {
    let r = |address: &str, state, attempts| Recipient {
        address: address.into(),
        state,
        attempts,
    };
    let mut cases = vec![
        sample(vec![]),
        sample(vec![r("a@example.com", RecipientState::Queued, 0)]),
        sample(vec![
            r("a@example.com", RecipientState::Queued, 0),
            r("b@example.org", RecipientState::Delivered, 1),
            r("c@example.net", RecipientState::Bounced, 3),
            r("d@example.io", RecipientState::Expired, u32::MAX),
        ]),
        Envelope {
            tenant: String::new(),
            campaign: String::new(),
            pool: String::new(),
            sender: String::new(),
            recipients: vec![
                r("", RecipientState::Queued, 127),
                r("ü@bücher.de", RecipientState::Queued, 128),
            ],
            size: u64::MAX,
            received_at_ms: 0,
            next_attempt_at_ms: u64::MAX,
            smtputf8: true,
            eight_bit: true,
            warmup_priority: true,
        },
    ];
    let mut only_eight_bit = sample(vec![r("x@y.z", RecipientState::Queued, 2)]);
    only_eight_bit.eight_bit = true;
    cases.push(only_eight_bit);
    let many = (0..1000)
        .map(|i| r(&format!("user{i}@d{}.example", i % 7), RecipientState::Queued, i))
        .collect();
    cases.push(sample(many));
    let mut long_strings = sample(vec![]);
    long_strings.tenant = "t".repeat(300);
    long_strings.campaign = "c".repeat(20_000);
    cases.push(long_strings);
    let mut with_pool = sample(vec![r("p@q.r", RecipientState::Queued, 1)]);
    with_pool.pool = "warm".into();
    with_pool.smtputf8 = true;
    cases.push(with_pool);
    cases
}

#[test]
fn the_pool_costs_a_byte_only_when_chosen_and_sets_its_flag() {
    let mut envelope = sample(vec![Recipient::queued("a@example.com")]);
    let without = encode(&envelope);
    assert_eq!(without[1] & FLAG_POOL, 0);
    envelope.pool = "cold".into();
    let with = encode(&envelope);
    assert_eq!(with[1] & FLAG_POOL, FLAG_POOL);
    assert_eq!(with.len(), without.len() + 1 + "cold".len());
    assert_eq!(decode(&with).map(|e| e.pool), Ok("cold".to_string()));
}

#[test]
fn roundtrip_table() {
    for envelope in table() {
        let bytes = encode(&envelope);
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode(&bytes).as_ref(), Ok(&envelope));
    }
}

#[test]
fn schedule_view_agrees_with_full_decode() {
    for envelope in table() {
        let bytes = encode(&envelope);
        let view = decode_schedule(&bytes);
        let expected = ScheduleInfo {
            tenant: &envelope.tenant,
            campaign: &envelope.campaign,
            next_attempt_at_ms: envelope.next_attempt_at_ms,
            queued_recipients: envelope.queued_count() as u64,
        };
        assert_eq!(view, Ok(expected));
    }
}

#[test]
fn encoding_is_compact() {
    let envelope = sample(vec![Recipient::queued("someone@example.com")]);
    // 2 header bytes + 2 + 6 + 6 varints + 5 + 12 + 21 strings + 1 count + 20 + 1 + 1 recipient.
    assert_eq!(encode(&envelope).len(), 77);
}

#[test]
fn every_truncation_is_an_error() {
    for envelope in table().into_iter().take(5) {
        let bytes = encode(&envelope);
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "prefix of {len} bytes decoded");
            assert!(
                decode_schedule(&bytes[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
    }
    assert_eq!(decode(&[]), Err(DecodeError::Empty));
}

#[test]
fn malformed_records_give_specific_errors() {
    let good = encode(&sample(vec![Recipient::queued("a@b.c")]));
    let mut cases: Vec<(Vec<u8>, DecodeError)> = Vec::new();

    let mut version = good.clone();
    version[0] = 2;
    cases.push((version, DecodeError::UnsupportedVersion(2)));

    let mut flags = good.clone();
    flags[1] = 0x91;
    cases.push((flags, DecodeError::UnknownFlags(0x90)));

    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0, 0]);
    cases.push((trailing, DecodeError::TrailingBytes(2)));

    let mut state = good.clone();
    let state_at = good.len() - 2;
    state[state_at] = 9;
    cases.push((state, DecodeError::InvalidState(9)));

    let mut overflow = vec![1, 0];
    overflow.extend_from_slice(&[0xff; 10]);
    overflow.push(0);
    cases.push((overflow, DecodeError::VarintOverflow));

    let mut too_big = vec![1, 0];
    too_big.extend_from_slice(&[0xff; 9]);
    too_big.push(0x02);
    cases.push((too_big, DecodeError::VarintOverflow));

    let mut utf8 = vec![1, 0, 0, 0, 0, 2, 0xc3, 0x28];
    utf8.extend_from_slice(&[0, 0, 0]);
    cases.push((utf8, DecodeError::InvalidUtf8));

    let mut huge_count = vec![1, 0, 0, 0, 0, 0, 0, 0];
    huge_count.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    cases.push((huge_count, DecodeError::Truncated));

    let mut huge_attempts = good[..good.len() - 1].to_vec();
    huge_attempts.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x10]);
    cases.push((huge_attempts, DecodeError::OutOfRange));

    for (bytes, expected) in cases {
        assert_eq!(decode(&bytes), Err(expected.clone()), "{bytes:?}");
    }
}

#[test]
fn varint_extremes_roundtrip() {
    for value in [
        0,
        1,
        127,
        128,
        16_383,
        16_384,
        u64::from(u32::MAX),
        u64::MAX - 1,
        u64::MAX,
    ] {
        let mut out = Vec::new();
        put_varint(&mut out, value);
        let mut reader = Reader::new(&out);
        assert_eq!(reader.varint(), Ok(value));
        assert_eq!(reader.remaining(), 0);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5EED_0001);
    for _ in 0..50_000 {
        let len = rng.random_range(0..64);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if rng.random_bool(0.5) && !bytes.is_empty() {
            bytes[0] = FORMAT_VERSION;
            if bytes.len() > 1 {
                bytes[1] &= KNOWN_FLAGS;
            }
        }
        let _ = decode(&bytes);
        let _ = decode_schedule(&bytes);
    }
}

#[test]
fn mutated_records_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5EED_0002);
    let originals: Vec<Vec<u8>> = table().iter().take(5).map(encode).collect();
    for _ in 0..20_000 {
        let mut bytes = originals[rng.random_range(0..originals.len())].clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..bytes.len());
            match rng.random_range(0..3) {
                0 => bytes[at] = rng.random(),
                1 => bytes.truncate(at),
                _ => bytes.insert(at, rng.random()),
            }
            if bytes.is_empty() {
                break;
            }
        }
        // A mutation may still be a valid record; then what it decodes to must survive a roundtrip.
        if let Ok(envelope) = decode(&bytes) {
            let again = encode(&envelope);
            assert_eq!(decode(&again), Ok(envelope));
        }
        let _ = decode_schedule(&bytes);
    }
}
