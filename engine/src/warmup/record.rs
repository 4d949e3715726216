//! The stored state of a warming source (spool CF `control`, key `warmup/SOURCE`, JSON) and its day
//! counters (spool CF `counters`, keys `w/SOURCE/YYYY-MM-DD/PROVIDER/KIND`, written with the outcomes).

use std::collections::BTreeMap;

use jiff::civil::Date;
use penguin_policy::warmup::DayTally;
use penguin_queue::{Counts, Spool, SpoolError};
use serde::{Deserialize, Serialize};

/// Prefix of the control records of warming sources.
pub const PREFIX: &str = "warmup/";

/// Where a source's warm-up came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// `[[source]] warmup` in the config (the config may change it).
    Config,
    /// `PUT /v1/sources/{s}/warmup` or `DELETE` (wins over the config).
    Api,
}

/// A warming source as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// Where it came from.
    pub origin: Origin,
    /// The plan's name.
    pub plan: String,
    /// The first day (`YYYY-MM-DD`, plan time zone).
    pub start: String,
    /// Declared warm by the operator: no caps.
    pub warm: bool,
    /// Held by the operator: steps neither advance nor go back.
    pub held: bool,
    /// The last local day judged.
    pub evaluated_through: Option<String>,
    /// Per provider name: its step and state.
    pub providers: BTreeMap<String, ProviderRecord>,
}

/// A source's progress with one provider.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRecord {
    /// 0-based step (the plan's length = warm).
    pub step: u32,
    /// `warming`, `held` or `stepped_back`: what the last judged day did.
    pub state: String,
    /// Why (the last verdict's reason).
    pub reason: Option<String>,
}

impl SourceRecord {
    /// A fresh warm-up on `plan` from `start`.
    pub fn new(origin: Origin, plan: &str, start: Date) -> SourceRecord {
        SourceRecord {
            origin,
            plan: plan.to_owned(),
            start: start.to_string(),
            warm: false,
            held: false,
            evaluated_through: None,
            providers: BTreeMap::new(),
        }
    }

    /// The start day.
    pub fn start_date(&self) -> Option<Date> {
        self.start.parse().ok()
    }

    /// The last judged day.
    pub fn evaluated_date(&self) -> Option<Date> {
        self.evaluated_through.as_deref().and_then(|day| day.parse().ok())
    }
}

/// The counter key of a warming source's `kind` toward `provider` on `day`.
pub fn counter_key(source: &str, day: Date, provider: &str, kind: &str) -> String {
    format!("w/{source}/{day}/{provider}/{kind}")
}

/// Adds the counts of a warming lane's outcomes (usage kinds: `delivered`, `deferred`, `bounced`;
/// each is also one `sent`) to the batch of the envelope update that stores them.
pub fn count_outcomes<'a>(
    counts: &mut Counts,
    source: &str,
    provider: &str,
    day: Date,
    kinds: impl Iterator<Item = &'a str>,
) {
    for kind in kinds {
        if matches!(kind, "delivered" | "deferred" | "bounced") {
            counts.add(counter_key(source, day, provider, "sent"), 1);
            counts.add(counter_key(source, day, provider, kind), 1);
        }
    }
}

/// Every day tally of a source: (day, provider) → tally.
pub fn read_tallies(spool: &Spool, source: &str) -> Result<BTreeMap<(Date, String), DayTally>, SpoolError> {
    let prefix = format!("w/{source}/");
    let mut tallies: BTreeMap<(Date, String), DayTally> = BTreeMap::new();
    for (key, value) in spool.counters(&prefix)? {
        let mut parts = key[prefix.len()..].splitn(3, '/');
        let (Some(day), Some(provider), Some(kind)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(day) = day.parse::<Date>() else {
            continue;
        };
        let tally = tallies.entry((day, provider.to_owned())).or_default();
        let value = u64::try_from(value).unwrap_or(0);
        match kind {
            "sent" => tally.sent = value,
            "delivered" => tally.delivered = value,
            "deferred" => tally.deferred = value,
            "bounced" => tally.bounced = value,
            _ => {}
        }
    }
    Ok(tallies)
}

/// Loads every stored source record.
pub fn load_all(spool: &Spool) -> Result<BTreeMap<String, SourceRecord>, SpoolError> {
    let mut records = BTreeMap::new();
    for (key, value) in spool.control_records(PREFIX)? {
        match serde_json::from_slice::<SourceRecord>(&value) {
            Ok(record) => {
                records.insert(key[PREFIX.len()..].to_owned(), record);
            }
            Err(error) => tracing::warn!(%key, %error, "ignoring an unreadable warm-up record"),
        }
    }
    Ok(records)
}

/// Stores (synced) a source's record.
pub fn store(spool: &Spool, source: &str, record: &SourceRecord) -> Result<(), SpoolError> {
    let value = serde_json::to_vec(record).unwrap_or_default();
    spool.put_control(&format!("{PREFIX}{source}"), &value)
}

/// Deletes a source's record.
pub fn delete(spool: &Spool, source: &str) -> Result<(), SpoolError> {
    spool.delete_control(&format!("{PREFIX}{source}")).map(|_| ())
}
