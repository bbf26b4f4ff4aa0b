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

/// What `auto` switches on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoMechanism {
    #[default]
    SynCookie,
    FirstSynDrop,
    /// `first_syn_drop`, then `syn_cookie` once retransmitted SYNs (repeated
    /// SYNs from sources with a challenge pending) reach
    /// `escalate_retry_rate`: a flood that resends each forged address gets
    /// through the first, not the second. Back to `first_syn_drop` the next
    /// time `auto` switches on.
    Escalate,
}

impl AutoMechanism {
    pub fn name(self) -> &'static str {
        match self {
            AutoMechanism::SynCookie => "syn_cookie",
            AutoMechanism::FirstSynDrop => "first_syn_drop",
            AutoMechanism::Escalate => "escalate",
        }
    }
}

/// How `syn_cookie` gets a verified client's connection to the listener.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CookieRoute {
    /// `transparent` where the kernel has `bpf_sk_assign_tcp_reqsk` (Linux
    /// 6.9+) and its TC program attached, else `listener`.
    #[default]
    Auto,
    /// Our own cookie with every TCP option; a TC program hands the ACK to
    /// the listener. Refused at start on a kernel without the kfunc.
    Transparent,
    /// The listener's own cookie (Linux 5.3+): MSS only on a source's
    /// first connection; needs `tcp_syncookies=2` while on.
    Listener,
}

impl CookieRoute {
    pub fn name(self) -> &'static str {
        match self {
            CookieRoute::Auto => "auto",
            CookieRoute::Transparent => "transparent",
            CookieRoute::Listener => "listener",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Verification {
    pub mode: VerifyMode,
    /// How `syn_cookie` hands connections to the listener.
    pub route: CookieRoute,
    /// What `auto` switches on.
    pub auto_mechanism: AutoMechanism,
    /// `escalate`: retransmitted SYNs per second that switch
    /// `first_syn_drop` to `syn_cookie`.
    pub escalate_retry_rate: u64,
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
            route: CookieRoute::Auto,
            auto_mechanism: AutoMechanism::SynCookie,
            escalate_retry_rate: 1_000,
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
        if self.escalate_retry_rate == 0 {
            return Err(format!(
                "{}: must be above 0",
                at("verification.escalate_retry_rate")
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

    /// The mechanism `mode` uses (`auto`: its `auto_mechanism`; `escalate`
    /// is `first_syn_drop` until `escalated`).
    pub fn mechanism(&self, mode: VerifyMode, escalated: bool) -> VerifyMode {
        match (mode, self.auto_mechanism) {
            (VerifyMode::Auto, AutoMechanism::SynCookie) => VerifyMode::SynCookie,
            (VerifyMode::Auto, AutoMechanism::FirstSynDrop) => VerifyMode::FirstSynDrop,
            (VerifyMode::Auto, AutoMechanism::Escalate) if escalated => VerifyMode::SynCookie,
            (VerifyMode::Auto, AutoMechanism::Escalate) => VerifyMode::FirstSynDrop,
            (m, _) => m,
        }
    }

    /// Writes the verification words of the kernel's config: the
    /// mechanism in force, whether it is on now, the window and the TTL.
    pub fn write(&self, mechanism: VerifyMode, active: bool, cfg: &mut filter_common::Config) {
        use filter_common::verify_mode;
        cfg.verify_mode = match mechanism {
            VerifyMode::FirstSynDrop => verify_mode::FIRST_SYN_DROP,
            VerifyMode::SynCookie => verify_mode::SYN_COOKIE,
            VerifyMode::Off | VerifyMode::Auto => verify_mode::OFF,
        };
        cfg.verify_active = (active && cfg.verify_mode != verify_mode::OFF) as u32;
        cfg.retry_min_ms = self.retry_min.0.as_millis() as u32;
        cfg.retry_max_ms = self.retry_max.0.as_millis() as u32;
        cfg.verified_ttl_s = self.verified_ttl.0.as_secs() as u32;
    }
}
