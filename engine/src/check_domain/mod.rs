//! Domain onboarding checks (skeleton, filled by the check-domain work).

pub mod cli;
