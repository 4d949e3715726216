//! HTTP injection, the part without IO: the request body of `POST /v1/messages`, its templates
//! (minijinja: variables, filters, conditionals; printing an undefined variable without a `default` is an error
//! for that recipient, never a blank) and the MIME message of one recipient (mail-builder:
//! multipart/alternative when both parts are given, UTF-8 headers encoded, Message-ID, Date).

use std::collections::BTreeMap;

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};

/// Header fields a request may not set: the builder writes them, or they steer the engine.
const RESERVED_HEADERS: [&str; 16] = [
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "dkim-signature",
    "received",
    "return-path",
    "x-pool",
    "x-warmup-priority",
];

/// `POST /v1/messages` (and `/v1/messages/preview`).
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InjectRequest {
    /// The tenant (admin tokens only; a tenant key sends as its own tenant).
    #[serde(default)]
    pub tenant: Option<String>,
    /// `"Ann <ann@acme.example>"` or `"ann@acme.example"`: a sender domain of the tenant. Also the
    /// envelope sender (bounces and DSNs go there).
    pub from: String,
    /// Reply-To, same forms as `from`.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// Subject template.
    pub subject: String,
    /// Plain text template.
    #[serde(default)]
    pub text: Option<String>,
    /// HTML template (auto-escaped).
    #[serde(default)]
    pub html: Option<String>,
    /// More header fields (values are templates too); not the ones the builder writes.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Campaign (like `X-Campaign-ID`; default `default`).
    #[serde(default)]
    pub campaign: Option<String>,
    /// IP pool, one of the tenant's (like `X-Pool`).
    #[serde(default)]
    pub pool: Option<String>,
    /// One message each.
    pub recipients: Vec<InjectRecipient>,
}

/// One recipient and its template variables.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InjectRecipient {
    /// The address.
    pub address: String,
    /// Variables of its templates (`{{ first_name }}`); `email` is the address unless given.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: serde_json::Map<String, serde_json::Value>,
    /// `"high"` for an engaged recipient (like `X-Warmup-Priority: high`): a warming source's
    /// capacity goes to such mail first. Default `"normal"`.
    #[serde(default)]
    pub warmup_priority: WarmupPriority,
}

/// The warm-up priority of an injected recipient.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WarmupPriority {
    /// Overflows first when a warming source is at its cap.
    #[default]
    Normal,
    /// Preferred for a warming source's capacity.
    High,
}

/// A refused part of a request: the field and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field (`subject`, `headers.X-Foo`, `from`, ...).
    pub field: String,
    /// What is wrong (with the template line where there is one).
    pub message: String,
}

impl FieldError {
    /// An error of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A mailbox: optional display name and address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    /// Display name.
    pub name: Option<String>,
    /// `local@domain`.
    pub address: String,
}

impl Mailbox {
    /// Parses `"Name <a@b>"`, `"<a@b>"` or `"a@b"`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Mailbox, String> {
        let text = text.trim();
        let (name, address) = match (text.rfind('<'), text.strip_suffix('>')) {
            (Some(open), Some(inner)) => {
                let name = text[..open].trim().trim_matches('"').trim();
                ((!name.is_empty()).then(|| name.to_string()), &inner[open + 1..])
            }
            _ => (None, text),
        };
        valid_address(address)?;
        Ok(Mailbox {
            name,
            address: address.to_string(),
        })
    }

    /// The domain, lowercase.
    pub fn domain(&self) -> String {
        self.address
            .rsplit_once('@')
            .map_or(String::new(), |(_, d)| d.to_ascii_lowercase())
    }

    /// As a mail-builder address.
    fn to_address(&self) -> Address<'static> {
        Address::new_address(self.name.clone(), self.address.clone())
    }
}

/// `Ok` for `local@domain` with both parts, at most 320 octets, no whitespace, controls or `<>`.
pub fn valid_address(address: &str) -> Result<(), String> {
    let bad = address.len() > 320
        || address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ','));
    match address.rsplit_once('@') {
        Some((local, domain)) if !bad && !local.is_empty() && domain.contains('.') => Ok(()),
        _ => Err(format!("{address:?} is not an email address")),
    }
}

/// The compiled templates of a request.
pub struct Templates {
    /// The environment holding them (strict undefined, HTML auto-escape for `html`).
    env: Environment<'static>,
}

/// The template names (fields) of a request, compiled once.
fn template_sources(request: &InjectRequest) -> Vec<(String, String)> {
    let mut sources = vec![("subject".to_string(), request.subject.clone())];
    if let Some(text) = &request.text {
        sources.push(("text".to_string(), text.clone()));
    }
    if let Some(html) = &request.html {
        sources.push(("html".to_string(), html.clone()));
    }
    for (name, value) in &request.headers {
        sources.push((format!("headers.{name}"), value.clone()));
    }
    sources
}

impl Templates {
    /// Checks the request's fields and compiles its templates; the first problem is the error (a
    /// template syntax error names the field and the line).
    pub fn compile(request: &InjectRequest) -> Result<Templates, FieldError> {
        if request.text.is_none() && request.html.is_none() {
            return Err(FieldError::new("text", "give text, html or both"));
        }
        for name in request.headers.keys() {
            check_header(name, &request.headers[name])?;
        }
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_auto_escape_callback(|name| {
            if name == "html" {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        // Bounded work per recipient: no endless loops from a template.
        env.set_fuel(Some(100_000));
        for (name, source) in template_sources(request) {
            env.add_template_owned(name.clone(), source)
                .map_err(|error| FieldError::new(&name, describe(&error)))?;
        }
        Ok(Templates { env })
    }

    /// Renders template `name` for `variables`.
    fn render(&self, name: &str, variables: &serde_json::Value) -> Result<String, String> {
        let template = self.env.get_template(name).map_err(|e| describe(&e))?;
        template
            .render(Serde(variables))
            .map_err(|e| format!("{name}: {}", describe(&e)))
    }
}

/// An error with its line, when minijinja knows it.
fn describe(error: &minijinja::Error) -> String {
    let what = error
        .detail()
        .map_or_else(|| error.kind().to_string(), str::to_string);
    match error.line() {
        Some(line) => format!("{what} (line {line})"),
        None => what,
    }
}

/// A header name must be a field name (RFC 5322 ftext) and not one the builder writes; its value one
/// line.
fn check_header(name: &str, value: &str) -> Result<(), FieldError> {
    let field = format!("headers.{name}");
    let valid_name = !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
    if !valid_name {
        return Err(FieldError::new(
            field,
            format!("{name:?} is not a header field name"),
        ));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str())
        || name.eq_ignore_ascii_case("x-campaign-id")
    {
        return Err(FieldError::new(
            field,
            format!("{name} is set by the request's own fields, not in headers"),
        ));
    }
    if value.contains(['\r', '\n']) {
        return Err(FieldError::new(field, "a header value is one line"));
    }
    Ok(())
}

/// What the builder needs besides the templates.
pub struct Envelope<'a> {
    /// From.
    pub from: &'a Mailbox,
    /// Reply-To.
    pub reply_to: Option<&'a Mailbox>,
    /// The Message-ID (without brackets).
    pub message_id: String,
    /// Date, unix seconds.
    pub date: u64,
}

/// The message of one recipient: its templates rendered with its variables (`email` defaults to the
/// address), built as MIME with CRLF line ends. `Err` says why this recipient gets no message.
pub fn render_message(
    request: &InjectRequest,
    templates: &Templates,
    recipient: &InjectRecipient,
    envelope: &Envelope<'_>,
) -> Result<Vec<u8>, String> {
    let mut variables = recipient.variables.clone();
    variables
        .entry("email")
        .or_insert_with(|| serde_json::Value::String(recipient.address.clone()));
    let variables = serde_json::Value::Object(variables);
    let subject = templates.render("subject", &variables)?;
    let mut builder = MessageBuilder::new()
        .from(envelope.from.to_address())
        .to(Address::new_address(None::<String>, recipient.address.clone()))
        .subject(Text::new(one_line(&subject)))
        .message_id(envelope.message_id.clone())
        .date(envelope.date);
    if let Some(reply_to) = envelope.reply_to {
        builder = builder.reply_to(reply_to.to_address());
    }
    for name in request.headers.keys() {
        let value = templates.render(&format!("headers.{name}"), &variables)?;
        builder = builder.header(name.clone(), header_value(&value));
    }
    if request.text.is_some() {
        builder = builder.text_body(templates.render("text", &variables)?);
    }
    if request.html.is_some() {
        builder = builder.html_body(templates.render("html", &variables)?);
    }
    builder
        .write_to_vec()
        .map_err(|e| format!("cannot build the message: {e}"))
}

/// A rendered value on one line.
fn one_line(value: &str) -> String {
    value.replace(['\r', '\n'], " ")
}

/// A header value: raw when plain ASCII, encoded (RFC 2047) otherwise.
fn header_value(value: &str) -> mail_builder::headers::HeaderType<'static> {
    let value = one_line(value);
    if value.is_ascii() {
        Raw::new(value).into()
    } else {
        Text::new(value).into()
    }
}

#[cfg(test)]
mod tests;
