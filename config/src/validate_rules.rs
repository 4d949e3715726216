//! Validation of `[shaping]`: its counts and closed-loop settings, `[[shaping.provider]]`,
//! `[[shaping.domain]]` and `[[shaping.rule]]`. Every rule that fails adds an error with its field path.

use std::collections::HashSet;
use std::time::Duration;

use crate::Config;
use crate::providers::OTHER_PROVIDER;
use crate::rate::RuleTrigger;
use crate::shaping::{RuleAction, RuleScope, ShapingRuleConfig};
use crate::validate::{Errors, check_domain};
use crate::validate_shaping::{check_name, known_providers};

/// Largest N of a counting trigger (`"N/h"`): the policy keeps one timestamp per match.
const MAX_TRIGGER_COUNT: u64 = 10_000;

/// The whole `[shaping]` section.
pub(crate) fn validate(config: &Config, errors: &mut Errors) {
    let shaping = &config.shaping;
    let counts = [
        ("max_connections", shaping.max_connections),
        (
            "max_deliveries_per_connection",
            shaping.max_deliveries_per_connection,
        ),
        (
            "max_recipients_per_transaction",
            shaping.max_recipients_per_transaction,
        ),
    ];
    check_counts("shaping", &counts, errors);
    for (field, duration) in [
        ("adaptive_cooldown", shaping.adaptive_cooldown),
        ("adaptive_recovery", shaping.adaptive_recovery),
    ] {
        errors.check(
            duration.get() > Duration::ZERO,
            format!("shaping.{field}"),
            "must be greater than zero",
        );
    }
    validate_provider_entries(config, errors);
    validate_domains(config, errors);
    let known = known_providers(config);
    let mut names = HashSet::new();
    for (index, rule) in shaping.rule.iter().enumerate() {
        validate_rule(
            rule,
            &format!("shaping.rule[{index}]"),
            &known,
            &mut names,
            errors,
        );
    }
}

/// Optional counts must be at least 1 when set.
fn check_counts(prefix: &str, counts: &[(&str, Option<usize>)], errors: &mut Errors) {
    for &(field, count) in counts {
        if let Some(count) = count {
            errors.check(count >= 1, format!("{prefix}.{field}"), "must be at least 1");
        }
    }
}

fn validate_provider_entries(config: &Config, errors: &mut Errors) {
    let known = known_providers(config);
    let mut seen = HashSet::new();
    for (index, entry) in config.shaping.provider.iter().enumerate() {
        let prefix = format!("shaping.provider[{index}]");
        let name = entry.provider.as_str();
        if !known.contains(name) {
            errors.check(false, format!("{prefix}.provider"), unknown_provider(name));
        } else {
            errors.check(
                seen.insert(name),
                format!("{prefix}.provider"),
                format!("provider {name:?} has two [[shaping.provider]] entries"),
            );
        }
        let counts = [
            ("max_connections", entry.max_connections),
            (
                "max_deliveries_per_connection",
                entry.max_deliveries_per_connection,
            ),
            (
                "max_recipients_per_transaction",
                entry.max_recipients_per_transaction,
            ),
            ("provider_max_connections", entry.provider_max_connections),
        ];
        check_counts(&prefix, &counts, errors);
        if name == OTHER_PROVIDER {
            let whole = "sites of no provider are not one receiver: limit them per lane with \
                         max_connections or max_message_rate";
            let set = [
                (
                    "provider_max_connections",
                    entry.provider_max_connections.is_some(),
                ),
                (
                    "provider_max_message_rate",
                    entry.provider_max_message_rate.is_some(),
                ),
            ];
            for (field, is_set) in set {
                errors.check(!is_set, format!("{prefix}.{field}"), whole);
            }
        }
    }
}

fn unknown_provider(name: &str) -> String {
    format!(
        "unknown provider {name:?}: use a built-in provider, a [[provider]] name, or \"other\" \
         (sites of no provider)"
    )
}

fn validate_domains(config: &Config, errors: &mut Errors) {
    let mut seen = HashSet::new();
    for (index, entry) in config.shaping.domain.iter().enumerate() {
        let path = format!("shaping.domain[{index}].domain");
        match check_domain(&entry.domain) {
            Err(reason) => errors.check(false, path, reason),
            Ok(()) => errors.check(
                seen.insert(entry.domain.as_str()),
                path,
                format!("{:?} has two [[shaping.domain]] entries", entry.domain),
            ),
        }
    }
}

/// One `[[shaping.rule]]`: its name, provider, pattern, and the fields its action needs or refuses.
fn validate_rule<'a>(
    rule: &'a ShapingRuleConfig,
    prefix: &str,
    known: &HashSet<&str>,
    names: &mut HashSet<&'a str>,
    errors: &mut Errors,
) {
    let at = |field: &str| format!("{prefix}.{field}");
    if let Some(name) = &rule.name {
        match check_name(name, "rule") {
            Err(reason) => errors.check(false, at("name"), reason),
            Ok(()) => errors.check(
                names.insert(name),
                at("name"),
                format!("rule {name:?} is defined twice"),
            ),
        }
    }
    if let Some(provider) = &rule.provider {
        errors.check(
            known.contains(provider.as_str()),
            at("provider"),
            unknown_provider(provider),
        );
    }
    validate_pattern(rule, prefix, errors);
    validate_action_fields(rule, prefix, errors);
    if let RuleTrigger::Count(rate) = rule.trigger {
        errors.check(
            rate.count <= MAX_TRIGGER_COUNT,
            at("trigger"),
            format!("{} matches is too many: at most {MAX_TRIGGER_COUNT}", rate.count),
        );
    }
}

/// Exactly one of `match` (non-empty) and `regex` (compiles).
fn validate_pattern(rule: &ShapingRuleConfig, prefix: &str, errors: &mut Errors) {
    let at = |field: &str| format!("{prefix}.{field}");
    match (&rule.r#match, &rule.regex) {
        (None, None) => errors.check(
            false,
            prefix,
            "needs `match` (text or enhanced status code the reply contains) or `regex`",
        ),
        (Some(_), Some(_)) => errors.check(false, at("regex"), "give either `match` or `regex`, not both"),
        (Some(text), None) => errors.check(!text.trim().is_empty(), at("match"), "must not be empty"),
        (None, Some(pattern)) => {
            if let Err(error) = regex::Regex::new(pattern) {
                let reason = error.to_string().replace('\n', " ");
                let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
                errors.check(
                    false,
                    at("regex"),
                    format!("invalid regular expression: {reason}"),
                );
            }
        }
    }
}

/// `duration` for suspend/retry only (required, > 0), `factor` for reduce only (in (0, 1)), `scope` for
/// suspend only, and a provider scope needs a provider.
fn validate_action_fields(rule: &ShapingRuleConfig, prefix: &str, errors: &mut Errors) {
    let at = |field: &str| format!("{prefix}.{field}");
    let action = rule.action;
    let name = action_name(action);
    match (action, rule.duration) {
        (RuleAction::Suspend | RuleAction::Retry, None) => {
            errors.check(
                false,
                at("duration"),
                format!("required for action {name:?}, e.g. \"30m\""),
            );
        }
        (RuleAction::Suspend | RuleAction::Retry, Some(duration)) => {
            errors.check(
                duration.get() > Duration::ZERO,
                at("duration"),
                "must be greater than zero",
            );
        }
        (_, Some(_)) => errors.check(
            false,
            at("duration"),
            format!("only applies to actions \"suspend\" and \"retry\", not {name:?}"),
        ),
        (_, None) => {}
    }
    if let Some(factor) = rule.factor {
        if action != RuleAction::Reduce {
            errors.check(
                false,
                at("factor"),
                format!("only applies to action \"reduce\", not {name:?}"),
            );
        } else {
            let value = factor.get();
            errors.check(
                value > 0.0 && value < 1.0,
                at("factor"),
                format!("{value} is out of range: must be greater than 0 and less than 1, e.g. 0.5"),
            );
        }
    }
    if let Some(scope) = rule.scope {
        if action != RuleAction::Suspend {
            errors.check(
                false,
                at("scope"),
                format!("only applies to action \"suspend\", not {name:?}"),
            );
        } else if scope == RuleScope::Provider {
            let named = rule.provider.as_deref().is_some_and(|p| p != OTHER_PROVIDER);
            errors.check(
                named,
                at("scope"),
                "\"provider\" needs the rule's provider (other than \"other\"); use \"site\"",
            );
        }
    }
}

fn action_name(action: RuleAction) -> &'static str {
    match action {
        RuleAction::Suspend => "suspend",
        RuleAction::Reduce => "reduce",
        RuleAction::Bounce => "bounce",
        RuleAction::Retry => "retry",
    }
}
