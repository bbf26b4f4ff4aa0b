//! `api-key` and `tls`: the credentials of the HTTPS API.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};

use super::Global;
use crate::api::keys::{self, KeyEntry, KeyFile, Scope};

/// Manage the HTTPS API's keys (kept as hashes in a root-only file).
///
/// Example: filter-ctl api-key add grafana --scope read
#[derive(Debug, Args)]
pub struct ApiKey {
    /// The key file [default: /etc/filter/api-keys.yaml]; the policy's
    /// `api.keys_file` must name the same.
    #[arg(long, value_name = "FILE", global = true)]
    file: Option<PathBuf>,
    #[command(subcommand)]
    what: KeyCmd,
}

#[derive(Debug, Subcommand)]
enum KeyCmd {
    /// Make a key, print it once (it is not stored, only its hash), and
    /// add it under NAME. A running controller takes the change at its
    /// next connection; no restart.
    Add {
        #[arg(value_name = "NAME")]
        name: String,
        #[arg(long, value_enum)]
        scope: Scope,
    },
    /// List the keys' names and scopes.
    List,
    /// Remove the key called NAME.
    Remove {
        #[arg(value_name = "NAME")]
        name: String,
    },
}

impl ApiKey {
    pub fn execute(self, _g: &Global) -> anyhow::Result<()> {
        let path = self
            .file
            .unwrap_or_else(|| PathBuf::from(keys::DEFAULT_KEYS_FILE));
        let mut file = KeyFile::load(&path, true)?;
        match self.what {
            KeyCmd::Add { name, scope } => {
                let valid = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                if !valid {
                    bail!("key name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'");
                }
                if file.keys.iter().any(|k| k.name == name) {
                    bail!("a key called {name} exists already (remove it first)");
                }
                let key = keys::generate()?;
                file.keys.push(KeyEntry {
                    name: name.clone(),
                    scope,
                    sha256: keys::hash(&key),
                });
                file.save(&path)?;
                eprintln!(
                    "added key {name} ({scope:?} scope) to {}; it is shown once, here:",
                    path.display()
                );
                println!("{key}");
            }
            KeyCmd::List => {
                for k in &file.keys {
                    println!("{}\t{:?}", k.name, k.scope);
                }
            }
            KeyCmd::Remove { name } => {
                let before = file.keys.len();
                file.keys.retain(|k| k.name != name);
                if file.keys.len() == before {
                    bail!("no key called {name} in {}", path.display());
                }
                file.save(&path)?;
                eprintln!("removed key {name}");
            }
        }
        Ok(())
    }
}

/// TLS material for the HTTPS API.
#[derive(Debug, Args)]
pub struct Tls {
    #[command(subcommand)]
    what: TlsCmd,
}

#[derive(Debug, Subcommand)]
enum TlsCmd {
    /// Make a self-signed certificate and key for a test rig (cert.pem,
    /// key.pem mode 0600, in DIR). Clients must be told to trust it; for
    /// production use a certificate from your CA.
    SelfSigned {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Names and addresses it is for (repeatable) [default: localhost
        /// and 127.0.0.1].
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
    },
}

impl Tls {
    pub fn execute(self, _g: &Global) -> anyhow::Result<()> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let TlsCmd::SelfSigned { out, mut names } = self.what;
        if names.is_empty() {
            names = vec!["localhost".into(), "127.0.0.1".into()];
        }
        let cert =
            rcgen::generate_simple_self_signed(names.clone()).context("making the certificate")?;
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let write = |name: &str, text: String, mode: u32| -> anyhow::Result<()> {
            use std::io::Write as _;
            let path = out.join(name);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&path)
                .with_context(|| format!("writing {}", path.display()))?;
            f.write_all(text.as_bytes())?;
            Ok(())
        };
        write("cert.pem", cert.cert.pem(), 0o644)?;
        write("key.pem", cert.signing_key.serialize_pem(), 0o600)?;
        eprintln!(
            "wrote {0}/cert.pem and {0}/key.pem for {1}",
            out.display(),
            names.join(", ")
        );
        Ok(())
    }
}
