//! Small identifiers for what the scheduler holds many of: tenant, campaign and domain names are
//! interned once (an item carries three `u32`s, not three strings), lanes, sites and connections are
//! indexes.

use std::collections::HashMap;
use std::sync::Arc;

/// An interned name (tenant, campaign or recipient domain).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NameId(pub u32);

/// A configured egress source (index into the settings' sources).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceId(pub u16);

/// A pool (index into the settings' pools).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolId(pub u16);

/// A provider (index into the settings' provider names; the last is `other`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProviderId(pub u16);

/// A destination site (the set of MX host names of one or more domains).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteId(pub u32);

/// A ready queue: (source, site).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LaneId(pub u32);

/// An outbound connection the scheduler counts (open or being opened).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// The scheduled queue an item belongs to: (tenant, campaign, recipient domain). Inside a ready queue
/// items wait in one FIFO per key, visited in turn, so that one tenant's backlog or one rate-limited
/// domain never holds back the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueKey {
    /// The tenant.
    pub tenant: NameId,
    /// The campaign.
    pub campaign: NameId,
    /// The recipient domain (lowercase).
    pub domain: NameId,
    /// `X-Warmup-Priority: high` mail waits in FIFOs of its own, visited first by a warming lane.
    pub high: bool,
}

/// Names interned for the life of the process: their number is the number of distinct tenants,
/// campaigns and domains ever delivered to, not the number of messages.
#[derive(Debug, Default)]
pub struct Names {
    /// Name → id.
    ids: HashMap<Arc<str>, NameId>,
    /// Id → name.
    names: Vec<Arc<str>>,
}

impl Names {
    /// The id of `name`, interning it if new.
    pub fn intern(&mut self, name: &str) -> NameId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = NameId(u32::try_from(self.names.len()).unwrap_or(u32::MAX));
        let shared: Arc<str> = Arc::from(name);
        self.names.push(Arc::clone(&shared));
        self.ids.insert(shared, id);
        id
    }

    /// The name of `id` (empty for an id this table did not make).
    pub fn name(&self, id: NameId) -> Arc<str> {
        usize::try_from(id.0)
            .ok()
            .and_then(|index| self.names.get(index))
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_stable_and_reversible() {
        let mut names = Names::default();
        let a = names.intern("acme");
        let b = names.intern("spring");
        assert_eq!(names.intern("acme"), a);
        assert_ne!(a, b);
        assert_eq!(&*names.name(b), "spring");
        assert_eq!(&*names.name(NameId(99)), "");
    }
}
