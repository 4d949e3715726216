//! Pure policy for penguin-mta: every decision is a function of its inputs and an injected `now`.
//! Nothing here touches sockets, disk or the wall clock, so each rule is table-tested.

pub mod auth_throttle;

pub use auth_throttle::{AuthThrottle, AuthThrottleRule, ThrottleDecision};
