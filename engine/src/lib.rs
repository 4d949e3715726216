//! penguin-mta, the sending engine of PenguinMails: SMTP reception into a durable RocksDB spool,
//! an HTTP listener for health and metrics, and the `penguin-mta` command line.
//!
//! Entry point for embedding and tests: [`server::serve`] with [`server::Listeners`] bound by the
//! caller (port 0 in tests) and a shutdown future. See ARCHITECTURE.md for the map.

pub mod api;
pub mod api_client;
pub mod campaign_cli;
pub mod campaigns;
pub mod check_domain;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod cluster_cli;
pub mod delivery;
pub mod dkim_cli;
pub mod egress_check;
pub mod event_log;
pub mod events;
pub mod inject;
pub mod metrics;
pub mod queue_cli;
pub mod reload;
pub mod reputation;
pub mod server;
pub mod shaping_cli;
pub mod smtp;
pub mod tenant_cli;
pub mod tenants;
pub mod timefmt;
pub mod tls;
pub mod unsubscribe;
pub mod usage;
pub mod warmup;
pub mod warmup_cli;
pub mod webhooks;

pub use server::{Listeners, ServeError, serve, serve_with_reload};
