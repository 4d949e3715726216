use super::*;

fn request(subject: &str, text: Option<&str>, html: Option<&str>) -> InjectRequest {
    InjectRequest {
        tenant: None,
        from: "Ann <ann@acme.example>".into(),
        reply_to: None,
        subject: subject.into(),
        text: text.map(str::to_string),
        html: html.map(str::to_string),
        headers: BTreeMap::new(),
        campaign: None,
        pool: None,
        recipients: Vec::new(),
    }
}

fn recipient(address: &str, variables: serde_json::Value) -> InjectRecipient {
    InjectRecipient {
        address: address.into(),
        variables: variables.as_object().cloned().unwrap_or_default(),
        warmup_priority: Default::default(),
    }
}

fn render(request: &InjectRequest, to: &InjectRecipient) -> Result<String, String> {
    let templates = Templates::compile(request).map_err(|e| e.message)?;
    let from = Mailbox::parse(&request.from)?;
    let envelope = Envelope {
        from: &from,
        reply_to: None,
        message_id: "m1@acme.example".into(),
        date: 1_796_342_399,
    };
    render_message(request, &templates, to, &envelope)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

#[test]
fn variables_filters_defaults_and_conditionals_are_rendered() {
    let req = request(
        "Hi {{ first_name | default(\"there\") }}",
        Some("{% if company %}At {{ company | upper }}{% else %}Solo{% endif %}, {{ email }}"),
        None,
    );
    let bob = render(
        &req,
        &recipient(
            "bob@x.example",
            serde_json::json!({"first_name": "Bob", "company": "Initech"}),
        ),
    );
    let bob = bob.unwrap_or_default();
    assert!(bob.contains("Subject: Hi Bob\r\n"), "{bob}");
    assert!(bob.contains("At INITECH, bob@x.example"), "{bob}");
    let anon = render(
        &req,
        &recipient("a@x.example", serde_json::json!({"company": ""})),
    )
    .unwrap_or_default();
    assert!(
        anon.contains("Subject: Hi there\r\n") && anon.contains("Solo, a@x.example"),
        "{anon}"
    );
}

#[test]
fn a_missing_variable_without_default_is_an_error_not_a_blank() {
    let req = request("Hi {{ first_name }}", Some("x"), None);
    let error = render(&req, &recipient("a@x.example", serde_json::json!({})))
        .err()
        .unwrap_or_default();
    assert!(
        error.starts_with("subject: ") && error.contains("undefined"),
        "{error}"
    );
}

#[test]
fn syntax_errors_name_the_field_and_the_line() {
    let req = request("ok", Some("line one\n{% if %}"), None);
    let error = Templates::compile(&req).err();
    let error = error.expect("a syntax error");
    assert_eq!(error.field, "text");
    assert!(error.message.contains("line 2"), "{}", error.message);
    let none = Templates::compile(&request("s", None, None))
        .err()
        .map(|e| e.field);
    assert_eq!(none.as_deref(), Some("text"));
}

#[test]
fn both_parts_make_multipart_alternative_and_utf8_is_encoded() {
    let req = request(
        "Grüße {{ name }}",
        Some("Hallo {{ name }}"),
        Some("<p>Hallo {{ name }}</p>"),
    );
    let message = render(
        &req,
        &recipient("b@x.example", serde_json::json!({"name": "<Jürgen>"})),
    )
    .unwrap_or_default();
    assert!(message.contains("multipart/alternative"), "{message}");
    assert!(
        message.contains("Subject: =?utf-8?"),
        "an encoded subject: {message}"
    );
    assert!(message.contains("Message-ID: <m1@acme.example>\r\n"), "{message}");
    assert!(message.contains("Date: "), "{message}");
    assert!(
        message.contains("From: \"Ann\" <ann@acme.example>\r\n")
            || message.contains("From: Ann <ann@acme.example>\r\n"),
        "{message}"
    );
    assert!(
        !message.contains("<p>Hallo <J"),
        "HTML is auto-escaped: {message}"
    );
    assert!(
        message.split("\r\n").all(|line| !line.contains('\n')),
        "CRLF only"
    );
}

#[test]
fn reserved_or_malformed_headers_are_refused_by_name() {
    for (name, value) in [
        ("From", "x"),
        ("X-Pool", "warm"),
        ("Bad Name", "x"),
        ("X-Ok", "two\nlines"),
        ("X-Campaign-ID", "c"),
    ] {
        let mut req = request("s", Some("t"), None);
        req.headers.insert(name.into(), value.into());
        let error = Templates::compile(&req).err().map(|e| e.field);
        assert_eq!(
            error.as_deref(),
            Some(format!("headers.{name}").as_str()),
            "{name}"
        );
    }
    let mut req = request("s", Some("t"), None);
    req.headers.insert("X-Id".into(), "{{ id }}".into());
    let message = render(&req, &recipient("b@x.example", serde_json::json!({"id": 7}))).unwrap_or_default();
    assert!(message.contains("X-Id: 7\r\n"), "{message}");
}

#[test]
fn mailboxes_parse_with_and_without_names() {
    let cases = [
        ("Ann <ann@acme.example>", Some("Ann"), "ann@acme.example"),
        ("\"Ann B\" <ann@acme.example>", Some("Ann B"), "ann@acme.example"),
        ("<ann@acme.example>", None, "ann@acme.example"),
        ("ann@acme.example", None, "ann@acme.example"),
    ];
    for (text, name, address) in cases {
        let parsed = Mailbox::parse(text);
        assert_eq!(
            parsed,
            Ok(Mailbox {
                name: name.map(str::to_string),
                address: address.to_string()
            }),
            "{text}"
        );
    }
    for bad in [
        "ann",
        "ann@",
        "@acme.example",
        "a b@c.example",
        "Ann <ann@acme.example",
        "x@localhost",
    ] {
        assert!(Mailbox::parse(bad).is_err(), "{bad}");
    }
}
