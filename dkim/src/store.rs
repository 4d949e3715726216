//! The key directory: `KEY_DIR/DOMAIN/SELECTOR.pem`, one private key per domain and selector.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Algorithm, DkimError, DnsRecord, key, names};

/// Mode of a key file: readable by its owner only.
const FILE_MODE: u32 = 0o600;
/// Mode of the directories created for keys.
const DIR_MODE: u32 = 0o700;
/// Temporary file names tried before giving up (a crashed run may have left some behind).
const TEMP_ATTEMPTS: u32 = 100;

/// Distinguishes the temporary files of one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The DKIM private keys of a directory: `KEY_DIR/DOMAIN/SELECTOR.pem` (domain lowercase).
#[derive(Debug, Clone)]
pub struct KeyStore {
    /// The key directory.
    key_dir: PathBuf,
}

impl KeyStore {
    /// A store over `key_dir` (nothing is read or created yet).
    pub fn new(key_dir: impl Into<PathBuf>) -> KeyStore {
        KeyStore {
            key_dir: key_dir.into(),
        }
    }

    /// The key directory.
    pub fn key_dir(&self) -> &Path {
        &self.key_dir
    }

    /// The key file of `domain` and `selector`: `KEY_DIR/DOMAIN/SELECTOR.pem`, domain lowercased.
    /// Errors if either is not a valid DNS name.
    pub fn key_path(&self, domain: &str, selector: &str) -> Result<PathBuf, DkimError> {
        Ok(self.path(&names::domain(domain)?, names::selector(selector)?))
    }

    /// Generates a key and writes it to `KEY_DIR/DOMAIN/SELECTOR.pem` (PKCS#8 PEM, mode 0600; missing
    /// directories are created with mode 0700), domain lowercased. Refuses to overwrite an existing key
    /// file. The file appears complete or not at all: it is written and synced under a temporary name
    /// in the same directory, then linked to its name (which fails if the name exists, so two
    /// concurrent runs cannot both win). Returns the DNS record to publish.
    pub fn generate(
        &self,
        domain: &str,
        selector: &str,
        algorithm: Algorithm,
    ) -> Result<DnsRecord, DkimError> {
        let domain = names::domain(domain)?;
        let selector = names::selector(selector)?;
        let path = self.path(&domain, selector);
        let context = Context {
            domain: &domain,
            selector,
        };
        if fs::symlink_metadata(&path).is_ok() {
            return Err(context.exists(&path));
        }
        let dir = self.key_dir.join(&domain);
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&dir)
            .map_err(|error| context.io("create directory", &dir, error))?;
        let new_key = key::generate(algorithm).ok_or_else(|| DkimError::KeyGeneration {
            domain: domain.clone(),
            selector: selector.to_owned(),
            algorithm,
        })?;
        write_new(&context, &dir, &path, new_key.pem.as_bytes())?;
        Ok(DnsRecord {
            domain: domain.clone(),
            selector: selector.to_owned(),
            algorithm,
            public_key: new_key.public_key,
        })
    }

    /// Writes a key made elsewhere (another node of a cluster) to `KEY_DIR/DOMAIN/SELECTOR.pem`, with
    /// the same atomic 0600 creation as [`KeyStore::generate`] (missing directories mode 0700). `pem`
    /// must be a usable signing key. A file with the same content is left alone (`Ok(false)`); a
    /// different one is replaced atomically (a synced temporary file renamed over it), so the signer
    /// uses the new key from the next message. Returns whether the file was written.
    pub fn install(&self, domain: &str, selector: &str, pem: &[u8]) -> Result<bool, DkimError> {
        let domain = names::domain(domain)?;
        let selector = names::selector(selector)?;
        let path = self.path(&domain, selector);
        let context = Context {
            domain: &domain,
            selector,
        };
        key::public_key(pem).map_err(|reason| context.invalid(&path, reason))?;
        match fs::read(&path) {
            Ok(current) if current == pem => return Ok(false),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(context.io("read", &path, error)),
        }
        let dir = self.key_dir.join(&domain);
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&dir)
            .map_err(|error| context.io("create directory", &dir, error))?;
        match write_new(&context, &dir, &path, pem) {
            Err(DkimError::KeyExists { .. }) => replace(&context, &dir, &path, pem)?,
            written => written?,
        }
        Ok(true)
    }

    /// The DNS record of an existing key; `Ok(None)` when there is no key file.
    pub fn dns_record(&self, domain: &str, selector: &str) -> Result<Option<DnsRecord>, DkimError> {
        let domain = names::domain(domain)?;
        let selector = names::selector(selector)?;
        let path = self.path(&domain, selector);
        let context = Context {
            domain: &domain,
            selector,
        };
        let content = match fs::read(&path) {
            Ok(content) => content,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(context.io("read", &path, error)),
        };
        let (algorithm, public_key) =
            key::public_key(&content).map_err(|reason| context.invalid(&path, reason))?;
        Ok(Some(DnsRecord {
            domain: domain.clone(),
            selector: selector.to_owned(),
            algorithm,
            public_key,
        }))
    }

    /// The key file of an already validated (and lowercased) domain and selector.
    pub(crate) fn path(&self, domain: &str, selector: &str) -> PathBuf {
        self.key_dir.join(domain).join(format!("{selector}.pem"))
    }
}

/// The domain and selector an operation is about, for its errors.
pub(crate) struct Context<'a> {
    /// The domain (lowercase).
    pub(crate) domain: &'a str,
    /// The selector.
    pub(crate) selector: &'a str,
}

impl Context<'_> {
    /// A file system error.
    pub(crate) fn io(&self, action: &'static str, path: &Path, error: io::Error) -> DkimError {
        DkimError::Io {
            domain: self.domain.to_owned(),
            selector: self.selector.to_owned(),
            action,
            path: path.to_owned(),
            error,
        }
    }

    /// A key file that cannot be used.
    pub(crate) fn invalid(&self, path: &Path, reason: String) -> DkimError {
        DkimError::InvalidKey {
            domain: self.domain.to_owned(),
            selector: self.selector.to_owned(),
            path: path.to_owned(),
            reason,
        }
    }

    /// A key file that exists already.
    fn exists(&self, path: &Path) -> DkimError {
        DkimError::KeyExists {
            domain: self.domain.to_owned(),
            selector: self.selector.to_owned(),
            path: path.to_owned(),
        }
    }
}

/// Writes `content` to the new file `path` atomically and without overwriting: a synced temporary file
/// in `dir`, hard-linked to `path`, then removed; finally the directory is synced.
fn write_new(context: &Context<'_>, dir: &Path, path: &Path, content: &[u8]) -> Result<(), DkimError> {
    let (temp, written) = write_temp(context, dir, content)?;
    let linked = written.and_then(|()| match fs::hard_link(&temp, path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Err(context.exists(path)),
        Err(error) => Err(context.io("create", path, error)),
    });
    // The temporary name goes in every case; once linked, `path` keeps the content.
    let removed = fs::remove_file(&temp);
    linked?;
    removed.map_err(|error| context.io("remove", &temp, error))?;
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|error| context.io("sync directory", dir, error))
}

/// Replaces the file `path` with `content` atomically: a synced temporary file in `dir` renamed over
/// it, then the directory synced.
fn replace(context: &Context<'_>, dir: &Path, path: &Path, content: &[u8]) -> Result<(), DkimError> {
    let (temp, written) = write_temp(context, dir, content)?;
    let renamed =
        written.and_then(|()| fs::rename(&temp, path).map_err(|error| context.io("replace", path, error)));
    if renamed.is_err() {
        let _ = fs::remove_file(&temp);
    }
    renamed?;
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|error| context.io("sync directory", dir, error))
}

/// A new temporary file (mode 0600) in `dir` holding `content`, synced; its path, and whether writing
/// it worked (on failure the caller removes it).
fn write_temp(
    context: &Context<'_>,
    dir: &Path,
    content: &[u8],
) -> Result<(PathBuf, Result<(), DkimError>), DkimError> {
    let (temp, mut file) = create_temp(context, dir)?;
    let written = file
        .set_permissions(fs::Permissions::from_mode(FILE_MODE))
        .and_then(|()| file.write_all(content))
        .and_then(|()| file.sync_all());
    drop(file);
    let written = written.map_err(|error| context.io("write", &temp, error));
    Ok((temp, written))
}

/// Creates a new temporary file (mode 0600) in `dir`.
fn create_temp(context: &Context<'_>, dir: &Path) -> Result<(PathBuf, File), DkimError> {
    let mut last_error = None;
    for _ in 0..TEMP_ATTEMPTS {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(
            ".{}.pem.{}.{n}.tmp",
            context.selector,
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => last_error = Some((temp, error)),
            Err(error) => return Err(context.io("create", &temp, error)),
        }
    }
    let (temp, error) = last_error.unwrap_or_else(|| (dir.to_owned(), io::ErrorKind::AlreadyExists.into()));
    Err(context.io("create a temporary file", &temp, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_writes_a_0600_key_keeps_the_same_and_replaces_a_different_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyStore::new(dir.path());
        let first = key::generate(Algorithm::Ed25519).expect("key").pem;
        let second = key::generate(Algorithm::Ed25519).expect("key").pem;
        assert!(
            store
                .install("Example.com", "s1", first.as_bytes())
                .expect("install")
        );
        let path = dir.path().join("example.com/s1.pem");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
        assert!(
            !store
                .install("example.com", "s1", first.as_bytes())
                .expect("same")
        );
        assert!(
            store
                .install("example.com", "s1", second.as_bytes())
                .expect("replace")
        );
        assert_eq!(fs::read(&path).expect("read"), second.as_bytes());
        assert_eq!(fs::read_dir(path.parent().expect("dir")).expect("dir").count(), 1);
        let refused = store
            .install("example.com", "s1", b"not a key")
            .expect_err("invalid");
        assert!(matches!(refused, DkimError::InvalidKey { .. }), "{refused}");
        let traversal = store.install("../etc", "s1", first.as_bytes()).expect_err("name");
        assert!(matches!(traversal, DkimError::InvalidName { .. }), "{traversal}");
    }

    #[test]
    fn write_new_refuses_an_existing_name_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let context = Context {
            domain: "example.com",
            selector: "s1",
        };
        let path = dir.path().join("s1.pem");
        write_new(&context, dir.path(), &path, b"first").expect("first write");
        let error = write_new(&context, dir.path(), &path, b"second").expect_err("exists");
        assert!(matches!(error, DkimError::KeyExists { .. }), "{error}");
        assert_eq!(fs::read(&path).expect("read"), b"first");
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("s1.pem")]);
    }
}
