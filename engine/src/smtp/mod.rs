//! SMTP reception: sans-IO framing and session, and the IO around them.
//!
//! | module | role |
//! |---|---|
//! | `codec` | strict CRLF command framing, DATA decoding (dot-unstuffing, smuggling-proof end), content checks |
//! | `session` (+ `session_auth`, `session_chunking`) | the RFC 5321/4954/3030/3207 state machine: lines in, [`session::Step`]s out |
//! | `reply` | reply codes and texts |
//! | `auth` | tenants, SASL decoding, argon2 verification |
//! | `headers` | Received/Message-ID/Date fields, campaign from X-Campaign-ID |
//! | `finish` | before the spool write: one-click unsubscribe headers (a copy per recipient) and DKIM signing |
//! | `connection` | the IO driver of one connection (timeouts, STARTTLS upgrade, spool, events) |
//! | `listener` | accept loop, connection limits, graceful stop |

pub mod auth;
pub mod codec;
pub mod connection;
pub mod finish;
pub mod headers;
pub mod listener;
pub mod reply;
pub mod session;
