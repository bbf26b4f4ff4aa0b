//! Source verification in the controller: the effective mode (policy, or
//! `set verification`), `auto`'s switch with hysteresis on the SYN rate
//! the kernel counts, and what `status` shows of it.

use std::time::Instant;

use filter_common::{counter, Config, Reason};

use crate::{
    policy::{Policy, VerifyMode},
    service::{
        audit::AuditEvent,
        controller::Controller,
        ops::{Caller, Done, OpError, VerificationStatus},
    },
};

/// `auto`'s state, and the SYN rate every mode reports.
pub struct Auto {
    /// Verification is on now (for `auto`; the fixed modes ignore it).
    pub active: bool,
    pub since: Instant,
    /// Why it is in its current state, for `status`.
    pub why: String,
    /// When the rate first went below `calm_syn_rate` in this calm spell.
    calm_since: Option<Instant>,
    syns: u64,
    read_at: Instant,
    pub syn_rate: f64,
    /// How `syn_cookie` works on this kernel (probed at start).
    pub route: String,
}

impl Auto {
    pub fn new(active: bool, syns: u64) -> Auto {
        Auto {
            active,
            since: Instant::now(),
            why: match active {
                true => "on at start (a previous controller had switched it on)".into(),
                false => "off at start".into(),
            },
            calm_since: None,
            syns,
            read_at: Instant::now(),
            syn_rate: 0.0,
            route: probe_route(),
        }
    }
}

/// What the kernel offers for `syn_cookie`. This build answers with the
/// listener's cookie (`bpf_tcp_gen_syncookie`, Linux 5.3+: the program
/// would not have loaded without it); the kfunc route needs a later build.
fn probe_route() -> String {
    let mut route =
        "listener-bound: XDP answers with the listener's cookie (bpf_tcp_gen_syncookie), \
         MSS only on a source's first connection"
            .to_owned();
    if crate::kernel::btf::kernel_names("bpf_sk_assign_tcp_reqsk") {
        route.push_str(
            "; this kernel also has bpf_sk_assign_tcp_reqsk (the transparent route, not in \
             this build)",
        );
    }
    route
}

impl Controller {
    /// The mode in force: an override from `set verification`, else the
    /// policy's.
    pub fn verify_mode(&self) -> VerifyMode {
        self.state
            .verification_override
            .unwrap_or(self.policy.verification.mode)
    }

    fn verify_active(&self) -> bool {
        match self.verify_mode() {
            VerifyMode::Off => false,
            VerifyMode::FirstSynDrop | VerifyMode::SynCookie => true,
            VerifyMode::Auto => self.verify.active,
        }
    }

    /// The kernel's config for `policy`, with the thresholds and the
    /// verification state in force.
    pub fn kernel_config(&self, policy: &Policy) -> Config {
        let mut cfg = policy.kernel_config(&self.state.thresholds(policy));
        policy
            .verification
            .write(self.verify_mode(), self.verify_active(), &mut cfg);
        cfg
    }

    fn write_config(&mut self) {
        let cfg = self.kernel_config(&self.policy);
        if let Err(e) = self.core.kernel.set_config(&cfg) {
            log::error!("writing CONFIG: {:#}", anyhow::Error::from(e));
        }
        self.sync_syncookies();
    }

    /// Whether the XDP cookie answer is on now.
    fn cookies_on(&self) -> bool {
        self.verify_active()
            && self.policy.verification.mechanism(self.verify_mode()) == VerifyMode::SynCookie
    }

    /// Keeps `net.ipv4.tcp_syncookies` at 2 while the cookie answer is on
    /// (the kernel gives a listener's cookie only then), and puts back the
    /// value it had when it is off again. What it had is kept in the state,
    /// so a restarted controller still puts it back.
    pub fn sync_syncookies(&mut self) {
        use crate::kernel::sysctl;
        let want = self.cookies_on();
        let before = self.state.syncookies_before;
        let result = match (want, self.state.syncookies_before) {
            (true, None) => sysctl::syncookies().and_then(|v| {
                if v != 2 {
                    sysctl::set_syncookies(2)?;
                    self.state.syncookies_before = Some(v);
                    log::info!("net.ipv4.tcp_syncookies {v} -> 2 while syn_cookie is on");
                }
                Ok(())
            }),
            (false, Some(v)) => sysctl::set_syncookies(v).map(|()| {
                self.state.syncookies_before = None;
                log::info!("net.ipv4.tcp_syncookies back to {v}");
            }),
            _ => Ok(()),
        };
        match result {
            // Kept in the state only when it changed.
            Ok(()) if self.state.syncookies_before != before => self.save_state(),
            Ok(()) => {}
            Err(e) => log::error!(
                "net.ipv4.tcp_syncookies: {e}; SYN cookies from XDP need it at 2 \
                 (without it SYNs pass to the host unchallenged)"
            ),
        }
    }

    /// Every cycle: the SYN rate since the last, and `auto`'s switch. On
    /// at once when the rate reaches `alarm_syn_rate`; off only after it
    /// stayed below `calm_syn_rate` for `hold` (a flood that pauses for a
    /// moment does not switch it off and on).
    pub(super) fn verification_step(&mut self) {
        let now = Instant::now();
        let Ok(syns) = self.core.kernel.counter(counter::SYNS) else {
            return;
        };
        let dt = now
            .duration_since(self.verify.read_at)
            .as_secs_f64()
            .max(1e-3);
        self.verify.syn_rate = syns.saturating_sub(self.verify.syns) as f64 / dt;
        (self.verify.syns, self.verify.read_at) = (syns, now);
        if self.verify_mode() != VerifyMode::Auto {
            return;
        }
        let v = self.policy.verification;
        let rate = self.verify.syn_rate;
        if !self.verify.active {
            if rate >= v.alarm_syn_rate as f64 {
                self.verify.active = true;
                self.verify.since = now;
                self.verify.calm_since = None;
                self.verify.why = format!(
                    "SYN rate {rate:.0}/s reached alarm_syn_rate {}",
                    v.alarm_syn_rate
                );
                log::warn!("verification on: {}", self.verify.why);
                self.write_config();
                self.core.audit.record(&AuditEvent::VerificationOn {
                    syn_rate: rate.round() as u64,
                    alarm_syn_rate: v.alarm_syn_rate,
                });
            }
            return;
        }
        if rate >= v.calm_syn_rate as f64 {
            self.verify.calm_since = None;
            return;
        }
        let calm = *self.verify.calm_since.get_or_insert(now);
        if now.duration_since(calm) >= v.hold.0 {
            self.verify.active = false;
            self.verify.since = now;
            self.verify.calm_since = None;
            self.verify.why = format!(
                "SYN rate stayed below calm_syn_rate {} for {}",
                v.calm_syn_rate, v.hold
            );
            log::warn!("verification off: {}", self.verify.why);
            self.write_config();
            self.core.audit.record(&AuditEvent::VerificationOff {
                syn_rate: rate.round() as u64,
                calm_syn_rate: v.calm_syn_rate,
            });
        }
    }

    /// `set verification MODE` (`None`: back to the policy's).
    pub(super) fn set_verification(
        &mut self,
        who: &Caller,
        mode: Option<VerifyMode>,
    ) -> Result<Done, OpError> {
        let old = self.verify_mode();
        let before = self.state.verification_override;
        self.state.verification_override = mode;
        let new = self.verify_mode();
        if new == VerifyMode::Auto && old != VerifyMode::Auto {
            // `auto` starts from the state the attack calls for, at the
            // next cycle; until then it keeps what the old mode did.
            self.verify.active = old == VerifyMode::FirstSynDrop;
        }
        let cfg = self.kernel_config(&self.policy);
        if let Err(e) = self.core.kernel.set_config(&cfg) {
            self.state.verification_override = before;
            return Err(OpError::kernel(e));
        }
        self.sync_syncookies();
        self.save_state();
        self.verify.since = Instant::now();
        self.verify.why = format!("set to {new} by an operator");
        self.core.audit.record(&AuditEvent::VerificationMode {
            old,
            new,
            overridden: mode.is_some(),
            by: who.clone(),
        });
        Ok(Done::VerificationSet { old, new })
    }

    pub(super) fn verification_status(&self) -> VerificationStatus {
        // One read of STATS for the three counters.
        let stats = self.core.kernel.stats().unwrap_or_default();
        let stat = |r: Reason| {
            stats
                .iter()
                .find(|x| x.reason == r.name())
                .map_or(0, |x| x.packets)
        };
        VerificationStatus {
            mode: self.verify_mode(),
            route: self.verify.route.clone(),
            mechanism: match self.policy.verification.mechanism(self.verify_mode()) {
                VerifyMode::SynCookie => {
                    "syn_cookie: XDP answers SYNs with the listener's cookie \
                     (tcp_syncookies=2 while on)"
                }
                VerifyMode::FirstSynDrop => "first_syn_drop (XDP)",
                _ => "none",
            }
            .into(),
            active: self.verify_active(),
            since_s: self.verify.since.elapsed().as_secs(),
            why: self.verify.why.clone(),
            syn_rate: self.verify.syn_rate.round(),
            challenged: stat(Reason::Unverified),
            passed: stat(Reason::Verified),
            failed: stat(Reason::ChallengeFailed),
            verified_sources: self.core.kernel.verified().map_or(0, |v| v.len()),
        }
    }
}
