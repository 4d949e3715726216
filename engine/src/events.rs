//! The one typed event stream. Whatever happens to a message is an [`Event`]; sinks (metrics now,
//! the JSON log and webhooks later) subscribe to the bus. Nothing counts or logs an outcome on its own.

use std::net::IpAddr;
use std::sync::Arc;

use penguin_queue::MessageId;
use serde::Serialize;

use crate::smtp::headers::TlsInfo;

/// Something that happened to a message.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A message was accepted: it is durable in the spool and the client got 250.
    Reception(Reception),
}

/// The facts of one accepted message.
#[derive(Clone, Debug, Serialize)]
pub struct Reception {
    /// Unix milliseconds of the 250.
    pub timestamp_ms: u64,
    /// Queue id.
    #[serde(serialize_with = "serialize_display")]
    pub id: MessageId,
    /// Tenant that sent it.
    pub tenant: String,
    /// Campaign from X-Campaign-ID.
    pub campaign: String,
    /// Envelope sender.
    pub sender: String,
    /// Number of recipients.
    pub recipients: usize,
    /// Bytes stored (with trace fields).
    pub size: u64,
    /// Client address.
    pub client_ip: IpAddr,
    /// TLS of the session (version, cipher) if any.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_tls")]
    pub tls: Option<TlsInfo>,
}

/// Serialises a value by its Display form.
fn serialize_display<T: std::fmt::Display, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// Serialises TLS parameters as "TLSv1.3 TLS13_AES_128_GCM_SHA256".
fn serialize_tls<S: serde::Serializer>(tls: &Option<TlsInfo>, serializer: S) -> Result<S::Ok, S::Error> {
    match tls {
        Some(tls) => serializer.collect_str(&format_args!("{} {}", tls.version, tls.cipher)),
        None => serializer.serialize_none(),
    }
}

/// A consumer of events.
pub trait EventSink: Send + Sync {
    /// Handles one event; must not block (sinks that do IO queue it).
    fn emit(&self, event: &Event);
}

/// Fans each event out to every sink.
#[derive(Clone, Default)]
pub struct EventBus {
    /// The subscribers, in order.
    sinks: Vec<Arc<dyn EventSink>>,
}

impl EventBus {
    /// A bus with these sinks.
    pub fn new(sinks: Vec<Arc<dyn EventSink>>) -> EventBus {
        EventBus { sinks }
    }

    /// Delivers `event` to every sink.
    pub fn emit(&self, event: Event) {
        for sink in &self.sinks {
            sink.emit(&event);
        }
    }
}
