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
    pub offenders: Offenders,
}

impl State {
    /// Reads the state; a missing file is an empty state.
    pub fn load(dir: &Path) -> anyhow::Result<State> {
        let path = dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        }
    }

    /// Writes to a temporary file and renames it over the old one, so a
    /// crash never leaves a torn file.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        let tmp = dir.join(format!("{FILE}.tmp"));
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&tmp, text)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join(FILE))
            .map_err(|e| anyhow::anyhow!("replacing {}: {e}", dir.join(FILE).display()))
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
        std::fs::write(dir.join(FILE), "{ not json").unwrap();
        assert!(State::load(&dir).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
