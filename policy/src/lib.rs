//! Pure policy for penguin-mta: every decision is a function of its inputs and an injected `now`.
//! Nothing here touches sockets, disk or the wall clock, so each rule is table-tested.

pub mod auth_throttle;
pub mod classify;
pub mod retry;
pub mod shaping;
pub mod warmup;

pub use auth_throttle::{AuthThrottle, AuthThrottleRule, ThrottleDecision};
pub use classify::{
    BounceClass, NetworkFailure, Outcome, ReplyView, classify_network, classify_reply, parse_enhanced,
};
pub use retry::{RetryDecision, RetrySchedule};
pub use shaping::{
    Adaptive, AdaptiveSettings, Candidate, DeliveryKey, Gcra, ProviderTable, Rate, RateChange, RateWindow,
    ReplyMatcher, Rule, RuleAction, RuleScope, SmoothWeighted, SuspensionScope, Trigger, TriggerCounter,
};
pub use warmup::{
    DayTally, DayVerdict, Health, MIN_HEALTH_SAMPLE, Plan as WarmupPlan, SimulatedDay, judge_day, next_step,
    simulate as simulate_warmup,
};
