//! Suspensions: "send nothing matching this until then".
//!
//! A suspension names any combination of tenant, campaign, recipient domain, provider and source; a
//! delivery is held while an active suspension matches it. Rules create the narrow ones (a source for a
//! provider after Yahoo's `[TSS04]`), operators the others through the API. A suspension that names
//! only a source and/or a provider holds a whole lane (the ready queues of that source to that
//! provider's sites), which the scheduler can check once per queue instead of once per message.

/// What a suspension applies to: every field that is set must match; unset fields match anything.
///
/// An empty scope matches every delivery: the config and the API should refuse it
/// ([`is_empty`](Self::is_empty)) unless a global pause is meant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SuspensionScope {
    /// Only this tenant's messages.
    pub tenant: Option<String>,
    /// Only this campaign's messages.
    pub campaign: Option<String>,
    /// Only recipients at this domain (compared case-insensitively).
    pub domain: Option<String>,
    /// Only sites of this provider.
    pub provider: Option<String>,
    /// Only deliveries from this egress source.
    pub source: Option<String>,
}

/// The delivery a suspension is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryKey<'a> {
    /// The message's tenant.
    pub tenant: &'a str,
    /// The message's campaign.
    pub campaign: &'a str,
    /// The recipient's domain.
    pub domain: &'a str,
    /// The provider of the recipient domain's site.
    pub provider: &'a str,
    /// The egress source the delivery would use.
    pub source: &'a str,
}

impl SuspensionScope {
    /// The scope of a whole lane: one source to one provider (what a provider-scoped rule suspends).
    pub fn lane(source: &str, provider: &str) -> SuspensionScope {
        SuspensionScope {
            source: Some(source.to_string()),
            provider: Some(provider.to_string()),
            ..SuspensionScope::default()
        }
    }

    /// Whether no field is set (the scope would match everything).
    pub fn is_empty(&self) -> bool {
        self.tenant.is_none()
            && self.campaign.is_none()
            && self.domain.is_none()
            && self.provider.is_none()
            && self.source.is_none()
    }

    /// Whether the delivery falls under this scope.
    pub fn matches(&self, key: &DeliveryKey<'_>) -> bool {
        field_matches(&self.tenant, key.tenant)
            && field_matches(&self.campaign, key.campaign)
            && self
                .domain
                .as_deref()
                .is_none_or(|domain| domain.eq_ignore_ascii_case(key.domain))
            && field_matches(&self.provider, key.provider)
            && field_matches(&self.source, key.source)
    }

    /// Whether this scope suspends the whole lane (`source`, `provider`): it names only a source and/or
    /// a provider (at least one), and those match.
    pub fn matches_lane(&self, source: &str, provider: &str) -> bool {
        let lane_only = self.tenant.is_none() && self.campaign.is_none() && self.domain.is_none();
        let names_something = self.source.is_some() || self.provider.is_some();
        lane_only
            && names_something
            && field_matches(&self.source, source)
            && field_matches(&self.provider, provider)
    }
}

/// An unset field matches anything; a set one must be equal.
fn field_matches(field: &Option<String>, value: &str) -> bool {
    field.as_deref().is_none_or(|own| own == value)
}

/// The latest end among the suspensions (scope, until µs) that match `key` and are active at `now_us`
/// (`until > now`); `None` when none holds the delivery.
pub fn suspended_until<'a>(
    scopes: impl IntoIterator<Item = (&'a SuspensionScope, u64)>,
    key: &DeliveryKey<'_>,
    now_us: u64,
) -> Option<u64> {
    scopes
        .into_iter()
        .filter(|&(scope, until)| until > now_us && scope.matches(key))
        .map(|(_, until)| until)
        .max()
}

/// The latest end among the active suspensions that hold the whole lane (`source`, `provider`).
pub fn lane_suspended_until<'a>(
    scopes: impl IntoIterator<Item = (&'a SuspensionScope, u64)>,
    source: &str,
    provider: &str,
    now_us: u64,
) -> Option<u64> {
    scopes
        .into_iter()
        .filter(|&(scope, until)| until > now_us && scope.matches_lane(source, provider))
        .map(|(_, until)| until)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(fields: [Option<&str>; 5]) -> SuspensionScope {
        let own = |field: Option<&str>| field.map(str::to_string);
        SuspensionScope {
            tenant: own(fields[0]),
            campaign: own(fields[1]),
            domain: own(fields[2]),
            provider: own(fields[3]),
            source: own(fields[4]),
        }
    }

    const KEY: DeliveryKey<'static> = DeliveryKey {
        tenant: "acme",
        campaign: "spring",
        domain: "Example.COM",
        provider: "yahoo",
        source: "ip1",
    };

    #[test]
    fn matching_table() {
        // ([tenant, campaign, domain, provider, source], matches KEY?, lane (ip1, yahoo)?, empty?)
        let table: &[([Option<&str>; 5], bool, bool, bool)] = &[
            ([None, None, None, None, None], true, false, true),
            ([Some("acme"), None, None, None, None], true, false, false),
            ([Some("other"), None, None, None, None], false, false, false),
            (
                [Some("acme"), Some("spring"), None, None, None],
                true,
                false,
                false,
            ),
            (
                [Some("acme"), Some("fall"), None, None, None],
                false,
                false,
                false,
            ),
            ([None, None, Some("example.com"), None, None], true, false, false),
            ([None, None, Some("example.org"), None, None], false, false, false),
            ([None, None, None, Some("yahoo"), Some("ip1")], true, true, false),
            ([None, None, None, Some("yahoo"), None], true, true, false),
            ([None, None, None, None, Some("ip1")], true, true, false),
            (
                [None, None, None, Some("google"), Some("ip1")],
                false,
                false,
                false,
            ),
            (
                [None, None, None, Some("yahoo"), Some("ip2")],
                false,
                false,
                false,
            ),
            (
                [Some("acme"), None, None, Some("yahoo"), Some("ip1")],
                true,
                false,
                false,
            ),
            ([None, None, None, Some("Yahoo"), None], false, false, false), // provider names are exact
        ];
        for &(fields, matches, lane, empty) in table {
            let s = scope(fields);
            assert_eq!(s.matches(&KEY), matches, "matches {fields:?}");
            assert_eq!(s.matches_lane("ip1", "yahoo"), lane, "lane {fields:?}");
            assert_eq!(s.is_empty(), empty, "empty {fields:?}");
        }
        assert_eq!(
            SuspensionScope::lane("ip1", "yahoo"),
            scope([None, None, None, Some("yahoo"), Some("ip1")])
        );
    }

    #[test]
    fn suspended_until_table() {
        let lane = SuspensionScope::lane("ip1", "yahoo");
        let tenant = scope([Some("acme"), None, None, None, None]);
        let other = scope([Some("other"), None, None, None, None]);
        let list = [(&lane, 500), (&tenant, 900), (&other, 5_000)];
        // (now, expected for KEY, expected for the lane)
        let table: &[(u64, Option<u64>, Option<u64>)] = &[
            (0, Some(900), Some(500)),
            (499, Some(900), Some(500)),
            (500, Some(900), None), // the lane's suspension has ended (until is exclusive)
            (899, Some(900), None),
            (900, None, None),
            (u64::MAX, None, None),
        ];
        for &(now, key_until, lane_until) in table {
            assert_eq!(suspended_until(list, &KEY, now), key_until, "key at {now}");
            assert_eq!(
                lane_suspended_until(list, "ip1", "yahoo", now),
                lane_until,
                "lane at {now}"
            );
        }
        assert_eq!(suspended_until(std::iter::empty(), &KEY, 0), None);
    }
}
