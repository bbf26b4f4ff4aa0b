//! `verification:`: how sources prove they are real before their SYNs
//! reach the host's listeners (see docs/verification.md).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::Dur;

/// What verification does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum VerifyMode {
    /// No verification: SYNs pass (and are still counted).
    #[default]
    Off,
    /// Always on: a source's first SYN is dropped, its retransmission
    /// verifies it.
    #[value(name = "first_syn_drop", alias = "first-syn-drop")]
    FirstSynDrop,
    /// Always on: a SYN is answered from XDP with a cookie SYN-ACK; the
    /// returning ACK verifies the source.
    #[value(name = "syn_cookie", alias = "syn-cookie")]
    SynCookie,
    /// On while the SYN rate is over `alarm_syn_rate`, off once it has
    /// stayed under `calm_syn_rate` for `hold`.
    Auto,
}

impl VerifyMode {
    pub fn name(self) -> &'static str {
        match self {
            VerifyMode::Off => "off",
            VerifyMode::FirstSynDrop => "first_syn_drop",
            VerifyMode::SynCookie => "syn_cookie",
            VerifyMode::Auto => "auto",
        }
    }
}

impl std::fmt::Display for VerifyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Verification {
    pub mode: VerifyMode,
    /// What `auto` switches on: `syn_cookie` or `first_syn_drop`.
    pub auto_mechanism: VerifyMode,
    /// SYNs per second (from every source, offered load) that switch
    /// `auto` on.
    pub alarm_syn_rate: u64,
    /// `auto` switches off after the SYN rate stayed below this for `hold`.
    pub calm_syn_rate: u64,
    pub hold: Dur,
    /// A retransmitted SYN verifies its source when it comes this long
    /// after the first (TCP stacks retransmit after about 1 s; some older
    /// ones after 3 s).
    pub retry_min: Dur,
    pub retry_max: Dur,
    /// How long a verified source stays verified.
    pub verified_ttl: Dur,
}

impl Default for Verification {
    fn default() -> Self {
        Verification {
            mode: VerifyMode::Off,
            auto_mechanism: VerifyMode::SynCookie,
            alarm_syn_rate: 5_000,
            calm_syn_rate: 1_000,
            hold: Dur(Duration::from_secs(30)),
            retry_min: Dur(Duration::from_millis(200)),
            retry_max: Dur(Duration::from_secs(4)),
            verified_ttl: Dur(Duration::from_secs(3600)),
        }
    }
}

impl Verification {
    /// Checks across fields; `at` names a field with its line.
    pub fn validate(&self, at: impl Fn(&str) -> String) -> Result<(), String> {
        if !matches!(
            self.auto_mechanism,
            VerifyMode::SynCookie | VerifyMode::FirstSynDrop
        ) {
            return Err(format!(
                "{}: must be syn_cookie or first_syn_drop, got {}",
                at("verification.auto_mechanism"),
                self.auto_mechanism
            ));
        }
        if self.alarm_syn_rate == 0 || self.calm_syn_rate >= self.alarm_syn_rate {
            return Err(format!(
                "{}: must be above 0 and above calm_syn_rate ({}), got {}",
                at("verification.alarm_syn_rate"),
                self.calm_syn_rate,
                self.alarm_syn_rate
            ));
        }
        let (min, max) = (self.retry_min.0, self.retry_max.0);
        if min < Duration::from_millis(10) || max <= min || max > Duration::from_secs(10) {
            return Err(format!(
                "{}: need 10ms <= retry_min < retry_max <= 10s, got {} and {}",
                at("verification.retry_max"),
                self.retry_min,
                self.retry_max
            ));
        }
        let ttl = self.verified_ttl.0;
        if ttl < Duration::from_secs(60) || ttl > Duration::from_secs(7 * 86_400) {
            return Err(format!(
                "{}: must be between 1m and 7days, got {}",
                at("verification.verified_ttl"),
                self.verified_ttl
            ));
        }
        if self.hold.0 < Duration::from_secs(1) || self.hold.0 > Duration::from_secs(86_400) {
            return Err(format!(
                "{}: must be between 1s and 1day, got {}",
                at("verification.hold"),
                self.hold
            ));
        }
        Ok(())
    }

    /// The mechanism `mode` uses (`auto`: its `auto_mechanism`).
    pub fn mechanism(&self, mode: VerifyMode) -> VerifyMode {
        match mode {
            VerifyMode::Auto => self.auto_mechanism,
            m => m,
        }
    }

    /// Writes the verification words of the kernel's config: the
    /// mechanism, whether it is on now, the window and the TTL.
    pub fn write(&self, mode: VerifyMode, active: bool, cfg: &mut filter_common::Config) {
        use filter_common::verify_mode;
        cfg.verify_mode = match self.mechanism(mode) {
            VerifyMode::FirstSynDrop => verify_mode::FIRST_SYN_DROP,
            VerifyMode::SynCookie => verify_mode::SYN_COOKIE,
            VerifyMode::Off | VerifyMode::Auto => verify_mode::OFF,
        };
        cfg.verify_active = (active && mode != VerifyMode::Off) as u32;
        cfg.retry_min_ms = self.retry_min.0.as_millis() as u32;
        cfg.retry_max_ms = self.retry_max.0.as_millis() as u32;
        cfg.verified_ttl_s = self.verified_ttl.0.as_secs() as u32;
    }
}
