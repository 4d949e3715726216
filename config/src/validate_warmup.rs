//! Validation of `[[warmup.plan]]`, the sources' `warmup` and `[reputation]`. Every rule that fails adds
//! an error with its field path.

use std::collections::HashSet;

use crate::Config;
use crate::rate::Factor;
use crate::validate::{Errors, check_domain};
use crate::validate_shaping::{check_name, known_providers};
use crate::warmup::{Overflow, WarmupPlanConfig};

/// Shortest `[reputation] check_every`: blocklists answer every minute at most.
const MIN_CHECK_EVERY_SECS: u64 = 60;

/// `[[warmup.plan]]`, `source[].warmup`, `[reputation]`.
pub(crate) fn validate(config: &Config, errors: &mut Errors) {
    let providers = known_providers(config);
    let pools: HashSet<String> = config.pools().into_iter().map(|pool| pool.name).collect();
    let mut names = HashSet::new();
    for (index, plan) in config.warmup.plan.iter().enumerate() {
        let at = |field: &str| format!("warmup.plan[{index}].{field}");
        match check_name(&plan.name, "plan") {
            Err(reason) => errors.check(false, at("name"), reason),
            Ok(()) => errors.check(
                names.insert(plan.name.as_str()),
                at("name"),
                format!("plan {:?} is defined twice", plan.name),
            ),
        }
        check_steps(&plan.daily, &at("daily"), errors);
        for (provider, steps) in &plan.provider_daily {
            let path = at(&format!("provider_daily.{provider}"));
            errors.check(
                providers.contains(provider.as_str()),
                path.clone(),
                format!("{provider:?} is not a provider (built-in, [[provider]] or \"other\")"),
            );
            check_steps(steps, &path, errors);
        }
        if let Err(error) = jiff::tz::TimeZone::get(&plan.timezone) {
            errors.check(
                false,
                at("timezone"),
                format!("{:?} is not a known IANA time zone: {error}", plan.timezone),
            );
        }
        if let Overflow::PoolNamed(name) = &plan.overflow {
            errors.check(
                pools.contains(name),
                at("overflow"),
                format!("pool {name:?} is not defined"),
            );
        }
        check_shares(plan, index, errors);
    }
    for (index, source) in config.source.iter().enumerate() {
        let Some(warmup) = &source.warmup else {
            continue;
        };
        errors.check(
            names.contains(warmup.plan.as_str()),
            format!("source[{index}].warmup.plan"),
            format!("{:?} is not a [[warmup.plan]] name", warmup.plan),
        );
        errors.check(
            parse_start(&warmup.start).is_ok(),
            format!("source[{index}].warmup.start"),
            format!("{:?} is not a date such as \"2026-12-01\"", warmup.start),
        );
    }
    validate_reputation(config, errors);
}

/// A `warmup.start` date.
pub fn parse_start(text: &str) -> Result<jiff::civil::Date, jiff::Error> {
    text.trim().parse()
}

/// Steps: at least one, each at least 1, never smaller than the one before.
fn check_steps(steps: &[u64], path: &str, errors: &mut Errors) {
    errors.check(!steps.is_empty(), path, "must list at least one daily cap");
    errors.check(
        steps.iter().all(|&cap| cap >= 1),
        path,
        "every daily cap must be at least 1",
    );
    errors.check(
        steps.windows(2).all(|pair| pair[0] <= pair[1]),
        path,
        "daily caps must not decrease from one step to the next",
    );
}

/// The plan's shares: between 0 and 1.
fn check_shares(plan: &WarmupPlanConfig, index: usize, errors: &mut Errors) {
    let shares: [(&str, Factor); 4] = [
        ("min_fill", plan.min_fill),
        ("max_deferral_rate", plan.max_deferral_rate),
        ("max_bounce_rate", plan.max_bounce_rate),
        ("max_complaint_rate", plan.max_complaint_rate),
    ];
    for (field, share) in shares {
        errors.check(
            (0.0..=1.0).contains(&share.get()),
            format!("warmup.plan[{index}].{field}"),
            format!("{} is not a share between 0 and 1", share.get()),
        );
    }
}

fn validate_reputation(config: &Config, errors: &mut Errors) {
    let reputation = &config.reputation;
    let mut seen = HashSet::new();
    for (index, zone) in reputation.dnsbl.iter().enumerate() {
        let path = format!("reputation.dnsbl[{index}]");
        match check_domain(zone) {
            Err(reason) => errors.check(false, path, reason),
            Ok(()) => errors.check(
                seen.insert(zone.to_ascii_lowercase()),
                path,
                format!("{zone:?} is listed twice"),
            ),
        }
    }
    errors.check(
        reputation.check_every.get().as_secs() >= MIN_CHECK_EVERY_SECS,
        "reputation.check_every",
        "must be at least \"1m\"",
    );
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn errors(toml: &str) -> Vec<String> {
        match Config::from_toml_str(toml) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    const PLAN: &str = r#"
[[warmup.plan]]
name = "standard"
daily = [50, 100, 200]
provider_daily = { microsoft = [20, 40] }
hours = "08:00-20:00"
timezone = "America/New_York"
overflow = "hold"

[[source]]
name = "ip9"
ip = "127.0.0.9"
warmup = { plan = "standard", start = "2026-12-01" }
"#;

    #[test]
    fn a_full_plan_is_valid() {
        let config = Config::from_toml_str(PLAN).expect("valid");
        let plan = &config.warmup.plan[0];
        assert_eq!(plan.steps_for("microsoft"), [20, 40]);
        assert_eq!(plan.steps_for("google"), [50, 100, 200]);
        assert_eq!(plan.hours.map(|h| (h.start, h.end)), Some((8, 20)));
        assert_eq!(plan.min_fill.get(), 0.8);
        assert_eq!(
            config.source[0].warmup.as_ref().map(|w| w.plan.as_str()),
            Some("standard")
        );
    }

    #[test]
    fn mistakes_name_their_field() {
        let cases = [
            (
                "daily = [50, 100, 200]",
                "daily = [100, 50]",
                "warmup.plan[0].daily",
            ),
            ("daily = [50, 100, 200]", "daily = []", "warmup.plan[0].daily"),
            (
                "microsoft = [20, 40]",
                "hotmail = [20, 40]",
                "warmup.plan[0].provider_daily.hotmail",
            ),
            ("America/New_York", "Mars/Olympus", "warmup.plan[0].timezone"),
            (
                "overflow = \"hold\"",
                "overflow = \"pool:nope\"",
                "warmup.plan[0].overflow",
            ),
            (
                "overflow = \"hold\"",
                "overflow = \"spill\"",
                "warmup.plan[0].overflow",
            ),
            ("\"08:00-20:00\"", "\"08:30-20:00\"", "warmup.plan[0].hours"),
            ("\"08:00-20:00\"", "\"20:00-08:00\"", "warmup.plan[0].hours"),
            ("overflow = \"hold\"", "min_fill = 1.5", "warmup.plan[0].min_fill"),
            (
                "plan = \"standard\", start",
                "plan = \"fast\", start",
                "source[0].warmup.plan",
            ),
            ("2026-12-01", "2026-13-01", "source[0].warmup.start"),
        ];
        for (from, to, path) in cases {
            let toml = PLAN.replace(from, to);
            let found = errors(&toml);
            assert!(
                found.iter().any(|e| e.starts_with(path)),
                "{to}: expected an error at {path}, got {found:?}"
            );
        }
    }

    #[test]
    fn reputation_zones_and_interval() {
        let ok = "[reputation]\ndnsbl = [\"zen.spamhaus.org\", \"b.barracudacentral.org\"]\ncheck_every = \"15m\"\n";
        assert_eq!(errors(ok), Vec::<String>::new());
        let config = Config::from_toml_str(ok).expect("valid");
        assert!(config.reputation.suspend_on_listing);
        let bad = "[reputation]\ndnsbl = [\"not a zone\", \"x.org\", \"x.org\"]\ncheck_every = \"10s\"\n";
        let found = errors(bad);
        for path in [
            "reputation.dnsbl[0]",
            "reputation.dnsbl[2]",
            "reputation.check_every",
        ] {
            assert!(found.iter().any(|e| e.starts_with(path)), "{path}: {found:?}");
        }
    }
}
