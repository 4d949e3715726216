//! Rendering of the shaping tables and rates, and the `suspend` request body.

use super::*;

/// Renders with `write` into a string.
fn render(write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut out = Vec::new();
    write(&mut out).expect("write");
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn rates_are_written_like_the_config() {
    let cases = [
        (0.5, "30/min"),
        (2.0, "2/s"),
        (50.0, "50/s"),
        (1.0 / 60.0, "1/min"),
        (1.0 / 3600.0, "1/h"),
        (3000.0 / 3600.0, "50/min"),
        (100.0 / 86_400.0, "100/d"),
        (2.5, "150/min"),
        (1.234_567, "1.23/s"),
        (0.000_001, "0.09/d"),
    ];
    for (rate, text) in cases {
        assert_eq!(format_rate(rate), text, "{rate}");
    }
}

#[test]
fn queues_table_has_one_line_per_queue() {
    let json = serde_json::json!({"queues": [
        {"source": "ip1", "site": "gmail-smtp-in.l.google.com", "provider": "gmail", "domains": ["gmail.com"],
         "queued": 12, "connections": 2, "configured": {}, "effective_rate": 0.5,
         "suspended_until": null, "suspended_reason": null,
         "last_throttle": {"at": "2026-12-01T10:00:00.000Z", "reply": "421 4.7.28 slow down"}},
        {"source": "ip2", "site": "mx.small.example", "provider": "other", "domains": [],
         "queued": 0, "connections": 0, "configured": {}, "effective_rate": null,
         "suspended_until": "2026-12-01T12:00:00.000Z", "suspended_reason": "operator: test",
         "last_throttle": null}
    ]});
    let view: ShapingList = serde_json::from_value(json).expect("view");
    let text = render(|out| write_queues(&view.queues, out));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let columns = |line: &str| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        columns(lines[0]),
        [
            "SOURCE",
            "SITE",
            "PROVIDER",
            "QUEUED",
            "CONNS",
            "RATE",
            "SUSPENDED",
            "UNTIL",
            "LAST",
            "THROTTLE"
        ]
    );
    assert_eq!(
        columns(lines[1]),
        [
            "ip1",
            "gmail-smtp-in.l.google.com",
            "gmail",
            "12",
            "2",
            "30/min",
            "-",
            "2026-12-01T10:00:00.000Z",
            "421",
            "4.7.28",
            "slow",
            "down"
        ]
    );
    assert_eq!(
        columns(lines[2]),
        [
            "ip2",
            "mx.small.example",
            "other",
            "0",
            "0",
            "-",
            "2026-12-01T12:00:00.000Z",
            "(operator:",
            "test)",
            "-"
        ]
    );
    // Aligned: every column starts at the same offset on every line.
    let offset = |line: &str, cell: &str| line.find(&format!("  {cell} ")).expect("present") + 2;
    assert_eq!(offset(lines[0], "PROVIDER"), offset(lines[1], "gmail"), "{text}");
    assert_eq!(offset(lines[0], "RATE"), offset(lines[1], "30/min"), "{text}");
    assert_eq!(offset(lines[0], "RATE"), offset(lines[2], "-"), "{text}");
}

#[test]
fn empty_listings_say_so() {
    let none = render(|out| write_queues(&[], out));
    assert_eq!(
        none,
        "no ready queues: none has queued mail, connections, a suspension or a reduced rate\n"
    );
    let none = render(|out| write_suspensions(&[], out));
    assert_eq!(none, "no suspensions in force\n");
}

#[test]
fn suspensions_table_shows_the_set_scope_fields() {
    let json = serde_json::json!({"suspensions": [
        {"id": "s00000000000000ab", "scope": {"tenant": "acme", "campaign": null, "domain": "example.com",
         "provider": null, "source": null}, "until": "2026-12-01T12:00:00.000Z", "reason": "",
         "created": "2026-12-01T10:00:00.000Z"}
    ]});
    let list: SuspensionList = serde_json::from_value(json).expect("list");
    let text = render(|out| write_suspensions(&list.suspensions, out));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("ID "), "{text}");
    let cells: Vec<&str> = lines[1]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cells,
        [
            "s00000000000000ab",
            "tenant=acme domain=example.com",
            "2026-12-01T12:00:00.000Z",
            "2026-12-01T10:00:00.000Z",
            "-"
        ]
    );
}

#[test]
fn suspend_sends_only_the_given_fields() {
    let args = SuspendArgs {
        api: ApiArgs {
            api: None,
            config: None,
            token: None,
        },
        duration: "2h".into(),
        tenant: Some("acme".into()),
        campaign: None,
        domain: Some("example.com".into()),
        provider: None,
        source: None,
        reason: Some("test".into()),
    };
    let body: Value = serde_json::from_slice(&suspend_body(&args)).expect("JSON");
    assert_eq!(
        body,
        serde_json::json!({"tenant": "acme", "domain": "example.com", "reason": "test", "duration": "2h"})
    );
}
