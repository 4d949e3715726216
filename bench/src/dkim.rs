//! The DKIM scenarios: keys for the From domain of the bench's messages, the `[dkim]` config that signs
//! with them, and the proof that penguin-mta really signed. A benchmark that silently measured unsigned
//! mail would be worthless, so every DKIM run is checked twice: a probe message through an engine with
//! the same config is captured and its signature verified with mail-auth (algorithm, domain, selector,
//! cryptographic pass), and after every measured run the engine's own counters must show no message
//! sent unsigned.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use penguin_dkim::{Algorithm, DnsRecord, KeyStore};

use crate::capture::CaptureServer;
use crate::engine::Engine;
use crate::postfix::{self, SourceLoad};
use crate::scenario::{Setup, Workload};

/// The From domain of every bench message: smtp-source writes `From: <SENDER>` with its `-f` sender
/// (`bench@bench.example`, see [`postfix::source`]), and the bench's own client the same address.
pub const FROM_DOMAIN: &str = "bench.example";
/// The selector of the bench's keys.
pub const SELECTOR: &str = "bench";

/// How penguin-mta signs in a DKIM scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signing {
    /// RSA 2048 bits, `a=rsa-sha256`.
    Rsa,
    /// Ed25519, `a=ed25519-sha256`.
    Ed25519,
}

impl Signing {
    /// The key type of penguin-dkim.
    fn algorithm(self) -> Algorithm {
        match self {
            Signing::Rsa => Algorithm::Rsa,
            Signing::Ed25519 => Algorithm::Ed25519,
        }
    }

    /// Human name: `RSA-2048`, `Ed25519`.
    pub fn label(self) -> &'static str {
        match self {
            Signing::Rsa => "RSA-2048",
            Signing::Ed25519 => "Ed25519",
        }
    }

    /// The `a=` tag of its signatures.
    pub fn tag(self) -> &'static str {
        match self {
            Signing::Rsa => "rsa-sha256",
            Signing::Ed25519 => "ed25519-sha256",
        }
    }
}

/// A key directory holding one key for [`FROM_DOMAIN`] and [`SELECTOR`] (removed when dropped).
pub struct DkimKeys {
    /// `KEY_DIR` (`KEY_DIR/bench.example/bench.pem`).
    dir: tempfile::TempDir,
    /// How it signs.
    signing: Signing,
    /// The public key, as it would be published.
    record: DnsRecord,
}

impl DkimKeys {
    /// Generates a key of `signing`'s type in a fresh directory under `parent`.
    pub fn generate(parent: &Path, signing: Signing) -> anyhow::Result<DkimKeys> {
        let dir = tempfile::Builder::new()
            .prefix("penguin-bench-dkim-")
            .tempdir_in(parent)?;
        let record = KeyStore::new(dir.path())
            .generate(FROM_DOMAIN, SELECTOR, signing.algorithm())
            .with_context(|| format!("generating the {} DKIM key", signing.label()))?;
        Ok(DkimKeys { dir, signing, record })
    }

    /// The engine's `[dkim]` section: sign every domain with [`SELECTOR`] from this directory.
    pub fn config(&self) -> String {
        format!(
            "[dkim]\nkey_dir = \"{}\"\nselectors = [\"{SELECTOR}\"]\n",
            self.dir.path().display()
        )
    }
}

/// The keys of a run, one directory per signing algorithm.
#[derive(Default)]
pub struct KeySet(BTreeMap<Signing, DkimKeys>);

impl KeySet {
    /// Generates one key per algorithm under `parent`.
    pub fn generate(parent: &Path, signings: &[Signing]) -> anyhow::Result<KeySet> {
        let mut keys = BTreeMap::new();
        for signing in signings {
            keys.insert(*signing, DkimKeys::generate(parent, *signing)?);
        }
        Ok(KeySet(keys))
    }

    /// The keys of `signing`.
    pub fn get(&self, signing: Signing) -> anyhow::Result<&DkimKeys> {
        self.0
            .get(&signing)
            .with_context(|| format!("no {} key was generated for this run", signing.label()))
    }
}

/// Sends one message of `workload` through a fresh engine signing with `keys` into a capture server
/// and verifies its signature. Returns what was verified, for the report.
pub fn probe(setup: &Setup<'_>, keys: &DkimKeys, workload: Workload) -> anyhow::Result<String> {
    let capture = CaptureServer::start()?;
    let engine = Engine::start(setup.binary, setup.work, Some(capture.address), Some(keys))?;
    let load = SourceLoad {
        sessions: 1,
        messages: 1,
        size: workload.size,
        recipients: 1,
        reuse: workload.reuse,
    };
    postfix::source(engine.smtp, load)?;
    let message = capture.next_message(Duration::from_secs(60))?;
    drop(engine);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let verified = runtime.block_on(verify(&message, keys))?;
    Ok(format!(
        "{verified} ({} B delivered for a {} B payload)",
        message.len(),
        workload.size
    ))
}

/// Checks the only DKIM signature of `message`: the expected algorithm, domain and selector, and a
/// cryptographic pass against the public key of `keys`.
async fn verify(message: &[u8], keys: &DkimKeys) -> anyhow::Result<String> {
    let results = penguin_dkim::verify_offline(message, &[&keys.record]).await?;
    let [result] = results.as_slice() else {
        bail!(
            "the delivered message has {} DKIM signatures, expected one ({} with selector {SELECTOR}): \
             penguin-mta did not sign it",
            results.len(),
            keys.signing.tag()
        );
    };
    ensure!(
        result.algorithm == keys.signing.tag() && result.domain == FROM_DOMAIN && result.selector == SELECTOR,
        "the delivered message is signed with a={} d={} s={}, expected a={} d={FROM_DOMAIN} s={SELECTOR}",
        result.algorithm,
        result.domain,
        result.selector,
        keys.signing.tag()
    );
    ensure!(
        result.pass,
        "the {} signature does not verify: {}",
        keys.signing.tag(),
        result.detail
    );
    Ok(format!(
        "a={} d={FROM_DOMAIN} s={SELECTOR}: verified (mail-auth: pass)",
        keys.signing.tag()
    ))
}

/// Checks the engine's counters after a run of `messages`: with `signing`, none of them may have been
/// sent unsigned (a `dkim_unsigned` event); without, every one must have been (that proves the
/// counter works, so the check of the signed runs can see unsigned mail).
pub fn check_census(engine: &Engine, messages: usize, signing: Option<Signing>) -> anyhow::Result<()> {
    let metrics = engine.metrics()?;
    let received = metric_sum(&metrics, "penguin_messages_received_total", "");
    let unsigned = metric_sum(&metrics, "penguin_tenant_events_total", "type=\"dkim_unsigned\"");
    ensure!(
        received >= messages as f64,
        "penguin-mta counted {received} received messages of {messages}"
    );
    match signing {
        Some(signing) => ensure!(
            unsigned == 0.0,
            "{unsigned} of {received} messages were sent without a {} signature (dkim_unsigned events)",
            signing.label()
        ),
        None => ensure!(
            unsigned == received,
            "without keys {unsigned} of {received} messages counted as unsigned: the dkim_unsigned \
             counter cannot be used to check the DKIM runs"
        ),
    }
    Ok(())
}

/// The sum of the samples of counter `name` whose labels contain `label` (`""`: all), from the
/// OpenMetrics text of `/metrics`.
pub fn metric_sum(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once('}')?,
                None => ("", rest),
            };
            labels
                .contains(label)
                .then(|| value.split_whitespace().next()?.parse::<f64>().ok())?
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_counter_samples_by_label() {
        let metrics = "# TYPE penguin_tenant_events counter\n\
            penguin_tenant_events_total{tenant=\"relay\",type=\"dkim_unsigned\"} 7\n\
            penguin_tenant_events_total{tenant=\"acme\",type=\"dkim_unsigned\"} 3\n\
            penguin_tenant_events_total{tenant=\"relay\",type=\"suppressed\"} 5\n\
            penguin_messages_received_total{tenant=\"relay\"} 10\n\
            penguin_messages_received_total_extra 99\n";
        let unsigned = metric_sum(metrics, "penguin_tenant_events_total", "type=\"dkim_unsigned\"");
        assert_eq!(unsigned, 10.0);
        assert_eq!(metric_sum(metrics, "penguin_messages_received_total", ""), 10.0);
        assert_eq!(metric_sum(metrics, "penguin_bytes_received_total", ""), 0.0);
    }

    /// A message signed by penguin-dkim passes; the same message unsigned or altered does not.
    #[tokio::test]
    async fn verifies_signatures_of_penguin_dkim() {
        let parent = tempfile::tempdir().expect("tempdir");
        let message = b"From: <bench@bench.example>\r\nTo: <sink@sink.example>\r\nSubject: x\r\n\r\nbody\r\n";
        for signing in [Signing::Rsa, Signing::Ed25519] {
            let keys = DkimKeys::generate(parent.path(), signing).expect("keys");
            let signer = penguin_dkim::Signer::new(std::sync::Arc::new(KeyStore::new(keys.dir.path())));
            let signed = signer
                .sign(message, FROM_DOMAIN, &[SELECTOR.to_owned()])
                .expect("sign");
            let mut signed_message = signed.header.clone();
            signed_message.extend_from_slice(message);
            let verified = verify(&signed_message, &keys).await.expect("verified");
            assert!(verified.contains(signing.tag()), "{verified}");
            let error = verify(message, &keys).await.expect_err("unsigned");
            assert!(error.to_string().contains("did not sign"), "{error}");
            let mut altered = signed_message.clone();
            altered.truncate(altered.len() - 6);
            altered.extend_from_slice(b"bodX\r\n");
            assert!(verify(&altered, &keys).await.is_err(), "an altered body fails");
        }
    }
}
