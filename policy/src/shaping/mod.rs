//! Traffic shaping decisions for the ready queues (egress source × destination site).
//!
//! Pure: every function takes its inputs and `now` (µs since the unix epoch) and returns a decision;
//! the engine's scheduler owns the state values, the timers and the IO. One file per concept:
//!
//! | file | concept |
//! |---|---|
//! | `rate.rs` | [`Rate`]: messages per second, always finite and positive |
//! | `gcra.rs` | [`Gcra`]: evenly spaced sends at a rate, 8 bytes per queue |
//! | `window.rs` | [`RateWindow`]: the observed rate of the last minute |
//! | `adaptive.rs` | [`Adaptive`]: the closed loop (AIMD) on throttling replies |
//! | `rules.rs` | [`Rule`]: reply rules (suspend, reduce, bounce, retry), matching and precedence |
//! | `trigger.rs` | [`TriggerCounter`]: "N matches within a window" |
//! | `builtin.rs` | [`builtin_rules`]: the large providers' documented throttling replies |
//! | `select.rs` | [`SmoothWeighted`]: weighted source choice within an IP pool |
//! | `slots.rs` | [`SlotBuffer`]: a node's share of a rate shared by several nodes (slots of a fleet GCRA) |
//! | `suspension.rs` | [`SuspensionScope`]: what a suspension holds |
//! | `provider.rs` | [`ProviderTable`]: destination → provider by MX host suffix |

pub mod adaptive;
pub mod builtin;
pub mod gcra;
pub mod provider;
pub mod rate;
pub mod rules;
pub mod select;
pub mod slots;
pub mod suspension;
pub mod trigger;
pub mod window;

#[cfg(test)]
mod simulation;

pub use adaptive::{Adaptive, AdaptiveSettings, AdaptiveState, DEFAULT_FACTOR, RateChange};
pub use builtin::builtin_rules;
pub use gcra::Gcra;
pub use provider::{OTHER_PROVIDER, ProviderTable};
pub use rate::Rate;
pub use rules::{
    ReplyMatcher, Rule, RuleAction, RuleScope, Trigger, effective_rules, first_match, lowercase_reply,
    reply_line,
};
pub use select::{Candidate, SmoothWeighted};
pub use slots::{SlotBuffer, fallback_rate, grant};
pub use suspension::{DeliveryKey, SuspensionScope, lane_suspended_until, suspended_until};
pub use trigger::{MAX_TRIGGER_HITS, TriggerCounter};
pub use window::RateWindow;
