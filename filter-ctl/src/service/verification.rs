//! Source verification in the controller: the effective mode (policy, or
//! `set verification`), `auto`'s switch with hysteresis on the SYN rate
//! the kernel counts, and what `status` shows of it.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use filter_common::{cookie, counter, Config, Reason};

use crate::{
    kernel::{handover, loader, sysctl},
    policy::{AutoMechanism, CookieRoute, Policy, VerifyMode},
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
    /// `escalate`: cookies took over from first-SYN drop in this spell;
    /// the repeated SYNs counted so far and their rate.
    pub escalated: bool,
    retries: u64,
    pub retry_rate: f64,
    /// The `syn_cookie` route in force, and what `status` says of it.
    pub transparent: bool,
    pub route: String,
    /// When the cookie keys were last rotated (by this controller).
    keys_at: Instant,
}

/// How often the keys of our own cookie format rotate. A cookie is valid
/// for one to two of its 68.7 s steps and the previous key is still
/// accepted, so any period above that loses no handshake.
pub const KEY_ROTATION: Duration = Duration::from_secs(600);

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
            escalated: false,
            retries: 0,
            retry_rate: 0.0,
            transparent: false,
            route: String::new(),
            keys_at: Instant::now(),
        }
    }
}

/// Which route `syn_cookie` takes: the policy's choice, as far as the
/// kernel and the attached programs allow. (transparent, description)
pub fn choose_route(wanted: CookieRoute, interfaces: &[String], pin_dir: &Path) -> (bool, String) {
    const LISTENER: &str = "listener: XDP answers with the listener's own cookie \
        (bpf_tcp_gen_syncookie, tcp_syncookies=2 while on); MSS only on a source's \
        first connection";
    if wanted == CookieRoute::Listener {
        return (false, format!("{LISTENER} (the policy's choice)"));
    }
    if !handover::available() {
        return (
            false,
            format!("{LISTENER} (this kernel lacks {})", handover::KFUNC),
        );
    }
    let missing: Vec<&str> = interfaces
        .iter()
        .filter(|i| !loader::if_index(i).is_ok_and(|x| handover::live(pin_dir, i, x)))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return (
            false,
            format!(
                "{LISTENER} (the handover TC program is not attached on {})",
                missing.join(", ")
            ),
        );
    }
    (
        true,
        format!(
            "transparent: XDP answers with the filter's own cookie and every TCP option, \
             a TC program hands the ACK to the listener ({})",
            handover::KFUNC
        ),
    )
}

/// Refuses `route: transparent` on a kernel without the kfunc.
pub fn check_route(policy: &Policy) -> anyhow::Result<()> {
    if policy.verification.route == CookieRoute::Transparent && !handover::available() {
        anyhow::bail!(
            "verification.route: transparent needs the kfunc {} (Linux 6.9+), which this \
             kernel lacks; use route: auto or listener",
            handover::KFUNC
        );
    }
    Ok(())
}

/// 128 random bits.
fn random_keys() -> std::io::Result<[u64; 2]> {
    let mut b = [0u8; 16];
    // SAFETY: the buffer is ours and 16 bytes long.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        return Err(std::io::Error::last_os_error());
    }
    Ok([
        u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
        u64::from_le_bytes(b[8..].try_into().expect("8 bytes")),
    ])
}

impl Controller {
    /// The mode in force: an override from `set verification`, else the
    /// policy's.
    pub fn verify_mode(&self) -> VerifyMode {
        self.state
            .verification_override
            .unwrap_or(self.policy.verification.mode)
    }

    /// The mechanism in force: the mode's, or `auto`'s (escalated or not).
    pub fn mechanism(&self) -> VerifyMode {
        self.policy
            .verification
            .mechanism(self.verify_mode(), self.verify.escalated)
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
        let mut cfg = policy.kernel_config(
            &self.state.thresholds(policy),
            crate::kernel::possible_cpus(),
        );
        let mechanism = policy
            .verification
            .mechanism(self.verify_mode(), self.verify.escalated);
        policy
            .verification
            .write(mechanism, self.verify_active(), &mut cfg);
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
        self.verify_active() && self.mechanism() == VerifyMode::SynCookie
    }

    /// Keeps `net.ipv4.tcp_syncookies` at 2 while the cookie answer is on
    /// (the kernel gives a listener's cookie only then), and puts back the
    /// value it had when it is off again. What it had is kept in the state,
    /// so a restarted controller still puts it back.
    pub fn sync_syncookies(&mut self) {
        let want = self.cookies_on();
        let before = self.state.syncookies_before;
        // The listener's cookie needs 2; the transparent route only that
        // cookies are on at all (1 or 2).
        let good = |v: u8| v == 2 || (self.verify.transparent && v == 1);
        let result = match (want, self.state.syncookies_before) {
            (true, None) => sysctl::syncookies().and_then(|v| {
                if !good(v) {
                    let to = if self.verify.transparent { 1 } else { 2 };
                    sysctl::set_syncookies(to)?;
                    self.state.syncookies_before = Some(v);
                    log::info!("net.ipv4.tcp_syncookies {v} -> {to} while syn_cookie is on");
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
                "net.ipv4.tcp_syncookies: {e}; SYN cookies from XDP need it on \
                 (at 2 for the listener route)"
            ),
        }
    }

    /// Picks the `syn_cookie` route and writes `SYNCOOKIE`: the route, what
    /// the host's TCP offers, and the keys (kept from the map if a previous
    /// controller set them; new if there are none or `rotate`: the current
    /// key becomes the previous one).
    pub fn sync_cookie_settings(&mut self, rotate: bool) {
        let (transparent, route) = choose_route(
            self.policy.verification.route,
            &self.attached,
            &self.policy.pin_dir,
        );
        if transparent != self.verify.transparent || route != self.verify.route {
            log::info!("syn_cookie route: {route}");
        }
        (self.verify.transparent, self.verify.route) = (transparent, route);
        let mut s = self.core.kernel.cookie_settings().unwrap_or_default();
        if rotate || s.keys[0] == [0, 0] {
            match random_keys() {
                Ok(k) => {
                    s.keys = [k, if s.keys[0] == [0, 0] { k } else { s.keys[0] }];
                    self.verify.keys_at = Instant::now();
                }
                Err(e) => log::error!("new cookie key: getrandom: {e}"),
            }
        }
        let host = sysctl::tcp_options();
        s.route = match transparent {
            true => cookie::route::KFUNC,
            false => cookie::route::LISTENER,
        };
        s.wscale = host.wscale;
        s.timestamps = host.timestamps as u8;
        s.sack = host.sack as u8;
        s.window_scaling = host.window_scaling as u8;
        if let Err(e) = self.core.kernel.set_cookie_settings(&s) {
            log::error!("writing SYNCOOKIE: {:#}", anyhow::Error::from(e));
        }
        self.sync_syncookies();
    }

    /// Every cycle: the SYN rate since the last, and `auto`'s switch. On
    /// at once when the rate reaches `alarm_syn_rate`; off only after it
    /// stayed below `calm_syn_rate` for `hold` (a flood that pauses for a
    /// moment does not switch it off and on).
    pub(super) fn verification_step(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.verify.keys_at) >= KEY_ROTATION {
            self.sync_cookie_settings(true);
            log::debug!("cookie key rotated");
        }
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
        if v.auto_mechanism == AutoMechanism::Escalate {
            self.escalation_step(dt);
        }
        let rate = self.verify.syn_rate;
        if !self.verify.active {
            if rate >= v.alarm_syn_rate as f64 {
                self.verify.active = true;
                self.verify.escalated = false;
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
            self.verify.escalated = false;
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

    /// `escalate`, every cycle: the rate of repeated SYNs from sources with
    /// a first-SYN challenge pending (a retransmission inside the window
    /// verifies, one outside fails); at `escalate_retry_rate`, cookies take
    /// over until `auto` switches off.
    fn escalation_step(&mut self, dt: f64) {
        let Ok(stats) = self.core.kernel.stats() else {
            return;
        };
        let retries: u64 = stats
            .iter()
            .filter(|x| {
                x.reason == Reason::Verified.name() || x.reason == Reason::ChallengeFailed.name()
            })
            .map(|x| x.packets)
            .sum();
        self.verify.retry_rate = retries.saturating_sub(self.verify.retries) as f64 / dt;
        self.verify.retries = retries;
        let v = self.policy.verification;
        let rate = self.verify.retry_rate;
        if !self.verify.active || self.verify.escalated || rate < v.escalate_retry_rate as f64 {
            return;
        }
        self.verify.escalated = true;
        self.verify.since = Instant::now();
        self.verify.why = format!(
            "retransmitted SYNs {rate:.0}/s reached escalate_retry_rate {}: syn_cookie \
             takes over from first_syn_drop",
            v.escalate_retry_rate
        );
        log::warn!("verification escalated: {}", self.verify.why);
        self.write_config();
        self.core.audit.record(&AuditEvent::VerificationEscalated {
            retry_rate: rate.round() as u64,
            escalate_retry_rate: v.escalate_retry_rate,
        });
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
        self.verify.escalated = false;
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
        // One read of STATS for the four counters.
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
            mechanism: match self.mechanism() {
                VerifyMode::SynCookie if self.verify.transparent => {
                    "syn_cookie: XDP answers SYNs with the filter's own cookie"
                }
                VerifyMode::SynCookie => {
                    "syn_cookie: XDP answers SYNs with the listener's cookie \
                     (tcp_syncookies=2 while on)"
                }
                VerifyMode::FirstSynDrop
                    if self.policy.verification.auto_mechanism == AutoMechanism::Escalate
                        && self.verify_mode() == VerifyMode::Auto =>
                {
                    "first_syn_drop (XDP), escalating to syn_cookie when retransmitted SYNs \
                     reach escalate_retry_rate"
                }
                VerifyMode::FirstSynDrop => "first_syn_drop (XDP)",
                _ => "none",
            }
            .into(),
            active: self.verify_active(),
            since_s: self.verify.since.elapsed().as_secs(),
            why: self.verify.why.clone(),
            syn_rate: self.verify.syn_rate.round(),
            cookies_sent: stat(Reason::ChallengeSent),
            dropped_unverified: stat(Reason::Unverified),
            passed: stat(Reason::Verified),
            failed: stat(Reason::ChallengeFailed),
            handed_over: self.core.kernel.counter(counter::HANDED_OVER).unwrap_or(0),
            handover_failed: self
                .core
                .kernel
                .counter(counter::HANDOVER_FAILED)
                .unwrap_or(0),
            verified_sources: self.core.kernel.verified().map_or(0, |v| v.len()),
        }
    }
}
