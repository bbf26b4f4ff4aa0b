//! Controller state that must survive a restart besides the pinned maps:
//! threshold overrides set from the CLI, and the offender history used for
//! escalation. Stored as JSON in `state_dir/state.json`, replaced atomically.

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

use crate::{
    detect::Offenders,
    model::metric::Metric,
    policy::{Policy, Thresholds},
};

const FILE: &str = "state.json";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// Thresholds set with `filter-ctl set threshold`, over the policy's.
    pub threshold_overrides: BTreeMap<Metric, u64>,
    /// The verification mode set with `filter-ctl set verification`, over
    /// the policy's.
    pub verification_override: Option<crate::policy::VerifyMode>,
    /// `net.ipv4.tcp_syncookies` before syn_cookie set it to 2 (None: not
    /// changed by us).
    pub syncookies_before: Option<u8>,
    pub offenders: Offenders,
}

impl State {
    /// Reads the state; a missing file is an empty state. An empty or
    /// unreadable-as-JSON file (a disk that filled up, a hand edit) must not
    /// keep the filter's controller down: it is moved aside as
    /// `state.json.bad-<unix time>`, a warning says so, and the controller
    /// starts with an empty state (threshold overrides and offender history
    /// lost; the pinned block list is not part of it).
    pub fn load(dir: &Path) -> anyhow::Result<State> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => String::new(),
            Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        };
        match serde_json::from_str(&text) {
            Ok(state) => Ok(state),
            Err(e) => {
                let aside = dir.join(format!("{FILE}.bad-{}", crate::model::clock::unix_now_s()));
                std::fs::rename(&path, &aside)
                    .map_err(|e| anyhow::anyhow!("moving aside {}: {e}", path.display()))?;
                log::warn!(
                    "{} is not a valid state file ({e}); moved to {} and starting with an empty \
                     state (threshold overrides and offender history are lost)",
                    path.display(),
                    aside.display()
                );
                Ok(State::default())
            }
        }
    }

    /// Writes to a temporary file, flushes it to disk, renames it over the
    /// old one and flushes the directory: a crash or power loss leaves the
    /// old file or the new one, never a torn or empty one.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        use std::io::Write as _;
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        let tmp = dir.join(format!("{FILE}.tmp"));
        let text = serde_json::to_vec(self)?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()
        };
        write().map_err(|e| anyhow::anyhow!("writing {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join(FILE))
            .map_err(|e| anyhow::anyhow!("replacing {}: {e}", dir.join(FILE).display()))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| anyhow::anyhow!("flushing {}: {e}", dir.display()))
    }

    /// The policy's thresholds with the overrides applied.
    pub fn thresholds(&self, policy: &Policy) -> Thresholds {
        let mut t = policy.thresholds;
        for (&metric, &value) in &self.threshold_overrides {
            t.set(metric, value);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_overrides_apply() {
        let dir = std::env::temp_dir().join(format!("filter-state-test-{}", std::process::id()));
        assert_eq!(State::load(&dir).unwrap(), State::default());
        let mut s = State::default();
        s.threshold_overrides.insert(Metric::Syn, 50);
        s.offenders
            .0
            .insert("192.0.2.1/32".into(), Default::default());
        s.save(&dir).unwrap();
        let back = State::load(&dir).unwrap();
        assert_eq!(back, s);
        let t = back.thresholds(&Policy::default());
        assert_eq!((t.syn, t.rst), (50, Policy::default().thresholds.rst));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_empty_or_corrupt_file_is_moved_aside_and_the_state_starts_empty() {
        let dir = std::env::temp_dir().join(format!("filter-state-bad-{}", std::process::id()));
        for bad in ["", "{ not json", "\u{feff}\0\0"] {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(FILE), bad).unwrap();
            assert_eq!(State::load(&dir).unwrap(), State::default(), "{bad:?}");
            assert!(!dir.join(FILE).exists());
            let aside: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                aside.len() == 1 && aside[0].starts_with("state.json.bad-"),
                "{aside:?}"
            );
            assert_eq!(std::fs::read_to_string(dir.join(&aside[0])).unwrap(), bad);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
