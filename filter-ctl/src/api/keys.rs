//! API keys: bearer tokens for the HTTPS API. A key is shown once, when
//! `filter-ctl api-key add` makes it; the key file keeps only its SHA-256
//! (a key is 256 random bits, so a fast hash is enough) with a name and a
//! scope. The file must be root's and private (0600 or stricter): a
//! controller refuses to start on any other. Keys are compared in constant
//! time. No key, hash or Authorization header is ever logged.

use std::{
    io::Write as _,
    os::unix::fs::{
        DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
    },
    path::Path,
};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

pub use crate::policy::DEFAULT_KEYS_FILE;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Status, counters, lists, thresholds, metrics.
    Read,
    /// Everything `read` may, and changes (block, allow, thresholds,
    /// verification, reload).
    Admin,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub name: String,
    pub scope: Scope,
    /// Hex SHA-256 of the key.
    pub sha256: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub keys: Vec<KeyEntry>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored form of `key`.
pub fn hash(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// A new key: `fk_` and 64 hex digits of the kernel's CSPRNG.
pub fn generate() -> anyhow::Result<String> {
    let mut b = [0u8; 32];
    // SAFETY: the buffer is ours and 32 bytes long.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        bail!("getrandom: {}", std::io::Error::last_os_error());
    }
    Ok(format!("fk_{}", hex(&b)))
}

impl KeyFile {
    /// Reads `path`, refusing a file that is not root's or that others may
    /// read (a missing file is an empty set only if `missing_ok`).
    pub fn load(path: &Path, missing_ok: bool) -> anyhow::Result<KeyFile> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && missing_ok => {
                return Ok(KeyFile::default())
            }
            Err(e) => return Err(e).with_context(|| format!("API key file {}", path.display())),
        };
        if meta.uid() != 0 {
            bail!(
                "API key file {} belongs to uid {}, not root: refusing it",
                path.display(),
                meta.uid()
            );
        }
        if meta.mode() & 0o077 != 0 {
            bail!(
                "API key file {} has mode {:o}: group and others must have no access \
                 (chmod 600)",
                path.display(),
                meta.mode() & 0o777
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading API key file {}", path.display()))?;
        let file: KeyFile = serde_yaml::from_str(&text)
            .with_context(|| format!("API key file {}", path.display()))?;
        for k in &file.keys {
            if k.sha256.len() != 64 || !k.sha256.bytes().all(|c| c.is_ascii_hexdigit()) {
                bail!(
                    "API key file {}: key {:?} has no valid sha256",
                    path.display(),
                    k.name
                );
            }
        }
        Ok(file)
    }

    /// Writes the file (0600, replaced atomically).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)?;
        }
        let tmp = path.with_extension("new");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(serde_yaml::to_string(self)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
    }

    /// The entry whose key `presented` is, comparing every stored hash in
    /// constant time (no early exit, no timing for which key nearly
    /// matched).
    pub fn find(&self, presented: &str) -> Option<&KeyEntry> {
        let h = hash(presented);
        let mut found = None;
        for k in &self.keys {
            if bool::from(k.sha256.as_bytes().ct_eq(h.as_bytes())) {
                found = Some(k);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_their_hash_only() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 64);
        let file = KeyFile {
            keys: vec![KeyEntry {
                name: "ops".into(),
                scope: Scope::Admin,
                sha256: hash(&a),
            }],
        };
        assert_eq!(file.find(&a).map(|k| k.name.as_str()), Some("ops"));
        assert!(file.find(&b).is_none());
        assert!(file.find("").is_none());
        assert!(!serde_yaml::to_string(&file).unwrap().contains(&a));
    }

    #[test]
    fn a_key_file_others_may_read_is_refused() {
        let dir = std::env::temp_dir().join(format!("filter-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("keys.yaml");
        KeyFile::default().save(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(KeyFile::load(&path, false).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = KeyFile::load(&path, false).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        assert!(KeyFile::load(&dir.join("none.yaml"), false).is_err());
        assert!(KeyFile::load(&dir.join("none.yaml"), true).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
