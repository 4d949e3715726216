//! Signing: one `DKIM-Signature` per selector whose key file exists, with the parsed keys cached.
//!
//! Each [`Signer::sign`] does one `stat` per selector; a cached key is used while its file's (mtime,
//! length, inode, device) are unchanged, so a key created or replaced while the server runs is used from
//! the next message on, and a removed key file stops signing. The cache lock is held only to look up or
//! store an `Arc`: two threads sign concurrently.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use mail_auth::common::crypto::DkimKey;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};

use crate::store::Context;
use crate::{DkimError, KeyStore, key, names};

/// The headers signed (`h=`), each instance present in the message. `From` is listed twice: mail-auth
/// signs every instance of a listed name and then appends to `h=` each list entry that matched no
/// instance, so the second `From` lands in `h=` once more than the message has `From` fields (an added
/// `From` breaks the signature). Absent headers of this list (`Cc`, `Reply-To`, …) are likewise named
/// in `h=`: nobody can add them later without breaking the signature, so headers must be complete
/// before signing.
pub const SIGNED_HEADERS: [&str; 12] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "From",
];

/// A key ready to sign for one domain and selector.
type ReadySigner = DkimSigner<DkimKey, Done>;

/// The identity of a key file's version: a replaced or rewritten file differs in one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    /// Last modification.
    modified: Option<SystemTime>,
    /// Size in bytes.
    len: u64,
    /// Inode number.
    inode: u64,
    /// Device.
    device: u64,
}

impl FileStamp {
    /// The stamp of a file's metadata.
    fn of(metadata: &Metadata) -> FileStamp {
        FileStamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            inode: metadata.ino(),
            device: metadata.dev(),
        }
    }
}

/// A parsed key and the version of the file it came from.
struct CachedKey {
    /// The key file's version when it was read.
    stamp: FileStamp,
    /// The key, with domain, selector and headers set.
    signer: Arc<ReadySigner>,
}

/// What [`Signer::sign`] produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signed {
    /// The `DKIM-Signature` fields, each ending with CRLF, to prepend to the message (empty when no
    /// selector had a key).
    pub header: Vec<u8>,
    /// The selectors that signed, in the order of their fields.
    pub selectors: Vec<String>,
}

/// Signs messages with the keys of a [`KeyStore`]; shared between threads (`Send + Sync`).
pub struct Signer {
    /// Where the keys are.
    store: Arc<KeyStore>,
    /// Parsed keys by (domain, selector).
    cache: Mutex<HashMap<(String, String), CachedKey>>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("key_dir", &self.store.key_dir())
            .field("cached_keys", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer using the keys of `store` (read when first needed).
    pub fn new(store: Arc<KeyStore>) -> Signer {
        Signer {
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Signs `message` (a complete RFC 5322 message with CRLF line endings) for `domain` with each of
    /// `selectors` whose key file exists; selectors without a key file are skipped, so the result may
    /// hold no signature (then `header` and `selectors` are empty). Signatures: relaxed/relaxed,
    /// `a=rsa-sha256` or `ed25519-sha256`, `d=` the domain lowercased, `t=` now, `h=` per
    /// [`SIGNED_HEADERS`] with `From` over-signed.
    ///
    /// A message that does not end with CRLF is signed as if it did, which is how it travels (the
    /// SMTP client ends the content with CRLF before the final dot); the caller need not change it.
    ///
    /// Errors: `domain` or a selector is not a DNS name, a key file cannot be read or is not a key,
    /// or signing fails (e.g. the message has none of the signed headers).
    pub fn sign(&self, message: &[u8], domain: &str, selectors: &[String]) -> Result<Signed, DkimError> {
        let domain = names::domain(domain)?;
        let terminated;
        let message = if message.ends_with(b"\r\n") {
            message
        } else {
            terminated = [message, b"\r\n"].concat();
            &terminated[..]
        };
        let mut signed = Signed::default();
        for selector in selectors {
            let selector = names::selector(selector)?;
            if signed.selectors.iter().any(|done| done == selector) {
                continue;
            }
            let context = Context {
                domain: &domain,
                selector,
            };
            let Some(signer) = self.ready_signer(&context)? else {
                continue;
            };
            let signature = signer.sign(message).map_err(|error| DkimError::Sign {
                domain: domain.clone(),
                selector: selector.to_owned(),
                reason: error.to_string(),
            })?;
            signature.write_header(&mut signed.header);
            signed.selectors.push(selector.to_owned());
        }
        Ok(signed)
    }

    /// The signer of a domain and selector: from the cache while the key file is unchanged, else read
    /// again; `None` (and the cache entry dropped) when there is no key file.
    fn ready_signer(&self, context: &Context<'_>) -> Result<Option<Arc<ReadySigner>>, DkimError> {
        let path = self.store.path(context.domain, context.selector);
        let cache_key = (context.domain.to_owned(), context.selector.to_owned());
        let stamp = match fs::metadata(&path) {
            Ok(metadata) => FileStamp::of(&metadata),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.lock().remove(&cache_key);
                return Ok(None);
            }
            Err(error) => return Err(context.io("stat", &path, error)),
        };
        if let Some(cached) = self.lock().get(&cache_key)
            && cached.stamp == stamp
        {
            return Ok(Some(Arc::clone(&cached.signer)));
        }
        // Read and parse without holding the lock: other threads keep signing meanwhile.
        let Some((stamp, signer)) = load(context, &path)? else {
            self.lock().remove(&cache_key);
            return Ok(None);
        };
        let cached = CachedKey {
            stamp,
            signer: Arc::clone(&signer),
        };
        self.lock().insert(cache_key, cached);
        Ok(Some(signer))
    }

    /// Locks the cache (a thread that panicked while holding it left it consistent: every change is a
    /// single insert or remove).
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), CachedKey>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reads and parses a key file; the stamp is that of the opened file, so it matches the content read.
/// `None` if the file has gone.
fn load(context: &Context<'_>, path: &Path) -> Result<Option<(FileStamp, Arc<ReadySigner>)>, DkimError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(context.io("open", path, error)),
    };
    let metadata = file.metadata().map_err(|error| context.io("stat", path, error))?;
    let mut content = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0).min(64 * 1024));
    file.read_to_end(&mut content)
        .map_err(|error| context.io("read", path, error))?;
    let signing_key = key::signing_key(&content).map_err(|reason| context.invalid(path, reason))?;
    let signer = DkimSigner::from_key(signing_key)
        .domain(context.domain)
        .selector(context.selector)
        .headers(SIGNED_HEADERS)
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed);
    Ok(Some((FileStamp::of(&metadata), Arc::new(signer))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signer_and_key_store_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Signer>();
        assert_send_sync::<KeyStore>();
        assert_send_sync::<ReadySigner>();
    }

    #[test]
    fn an_unchanged_key_file_is_parsed_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(KeyStore::new(dir.path()));
        store
            .generate("example.com", "s1", crate::Algorithm::Rsa)
            .expect("generate");
        let signer = Signer::new(Arc::clone(&store));
        let context = Context {
            domain: "example.com",
            selector: "s1",
        };
        let first = signer.ready_signer(&context).expect("ok").expect("key");
        let second = signer.ready_signer(&context).expect("ok").expect("key");
        assert!(Arc::ptr_eq(&first, &second), "served from the cache");
        // A new file (new inode) under the same name is read again.
        fs::remove_file(store.path("example.com", "s1")).expect("remove");
        store
            .generate("example.com", "s1", crate::Algorithm::Rsa)
            .expect("generate");
        let third = signer.ready_signer(&context).expect("ok").expect("key");
        assert!(!Arc::ptr_eq(&second, &third), "reloaded");
    }
}
