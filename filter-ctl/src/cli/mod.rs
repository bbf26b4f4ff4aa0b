//! Command-line interface. Each verb lives in its own module; the doc
//! comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{
    api::client::Client,
    policy::DEFAULT_PIN_DIR,
    service::{
        core::Core,
        ops::{Caller, Done, ErrorKind, Op, OpError},
    },
};

mod attach;
mod control_verbs;
mod detach;
mod docs;
mod list;
mod lists;
mod policy;
mod run;
mod secure;
mod stats;
mod top;

/// XDP packet filter for TCP floods: run the controller, block and allow
/// sources, read counters, tune thresholds live.
///
/// The filter runs in the kernel on its own once attached, with its state in
/// pinned maps under --pin-dir. `filter-ctl run` is the controller that
/// promotes offenders; the other verbs talk to it over --socket when it
/// runs, and apply the same operations to the pinned maps themselves when
/// it does not (audited to --audit-log, marked offline).
#[derive(Debug, Parser)]
#[command(name = "filter-ctl", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Directory on a bpf filesystem holding the pinned maps and links
    /// [default: /sys/fs/bpf/filter]. Given to `run`, it replaces the
    /// policy's `pin_dir`.
    #[arg(
        long = "pin-dir",
        global = true,
        env = "FILTER_PIN_DIR",
        hide_env_values = true,
        value_name = "PIN_DIR"
    )]
    pin_dir: Option<PathBuf>,
    /// The running controller's control socket [default:
    /// /run/filter/ctl.sock]. Given to `run`, it replaces the policy's
    /// `control_socket`.
    #[arg(
        long = "socket",
        global = true,
        env = "FILTER_SOCKET",
        hide_env_values = true,
        value_name = "SOCKET"
    )]
    socket: Option<PathBuf>,
    /// The audit log that changes made with no controller running go to
    /// [default: /var/log/filter/audit.jsonl] (a running controller writes
    /// its policy's).
    #[arg(
        long = "audit-log",
        global = true,
        env = "FILTER_AUDIT_LOG",
        hide_env_values = true,
        value_name = "AUDIT_LOG"
    )]
    audit_log: Option<PathBuf>,
}

impl Global {
    pub fn pin_dir(&self) -> PathBuf {
        self.pin_dir
            .clone()
            .unwrap_or_else(|| DEFAULT_PIN_DIR.into())
    }

    pub fn socket(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| crate::policy::DEFAULT_SOCKET.into())
    }

    pub fn audit_log(&self) -> PathBuf {
        self.audit_log
            .clone()
            .unwrap_or_else(|| crate::policy::DEFAULT_AUDIT_LOG.into())
    }

    /// Applies `op` through the running controller; with none running, the
    /// same service code applies it to the pinned maps here (validated and
    /// audited the same way, the audit line saying it was offline).
    fn call(&self, op: Op) -> Result<Done, OpError> {
        match Client::new(&self.socket()).call(&op) {
            Err(e) if e.kind == ErrorKind::NotRunning => {
                // SAFETY: geteuid has no preconditions and cannot fail.
                let uid = unsafe { libc::geteuid() };
                let edits = op.edits();
                let done = Core::offline(&self.pin_dir(), &self.audit_log(), &op)?
                    .apply(&Caller::Offline { uid }, op)?;
                if edits {
                    eprintln!(
                        "note: no controller is running: applied to the maps pinned under {} \
                         and audited to {}",
                        self.pin_dir().display(),
                        self.audit_log().display()
                    );
                }
                Ok(done)
            }
            answer => answer,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Run(run::Run),
    Policy(policy::PolicyCmd),
    Status(control_verbs::Status),
    Reload(control_verbs::Reload),
    Set(control_verbs::Set),
    Get(control_verbs::Get),
    Top(top::Top),
    Attach(attach::Attach),
    Detach(detach::Detach),
    Block(lists::Block),
    Unblock(lists::Unblock),
    Allow(lists::Allow),
    Disallow(lists::Disallow),
    List(list::List),
    Stats(stats::Stats),
    ApiKey(secure::ApiKey),
    Tls(secure::Tls),
    Completions(docs::Completions),
    Manpage(docs::Manpage),
}

impl Cli {
    pub fn execute(self) -> anyhow::Result<()> {
        let g = &self.global;
        match self.command {
            Command::Run(c) => c.execute(g),
            Command::Policy(c) => c.execute(g),
            Command::Status(c) => c.execute(g),
            Command::Reload(c) => c.execute(g),
            Command::Set(c) => c.execute(g),
            Command::Get(c) => c.execute(g),
            Command::Top(c) => c.execute(g),
            Command::Attach(c) => c.execute(g),
            Command::Detach(c) => c.execute(g),
            Command::Block(c) => c.execute(g),
            Command::Unblock(c) => c.execute(g),
            Command::Allow(c) => c.execute(g),
            Command::Disallow(c) => c.execute(g),
            Command::List(c) => c.execute(g),
            Command::Stats(c) => c.execute(g),
            Command::ApiKey(c) => c.execute(g),
            Command::Tls(c) => c.execute(g),
            Command::Completions(c) => c.execute(g),
            Command::Manpage(c) => c.execute(g),
        }
    }
}

/// Prints `value` as pretty JSON on stdout.
fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A time to live: `90s`, `10m`, `1h`, `2d`, `1h30m`; `0`, `never` or
/// `permanent` mean no expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ttl(pub Option<std::time::Duration>);

impl std::str::FromStr for Ttl {
    type Err = String;

    /// Whole seconds up to ten years: an entry stores exactly what was
    /// asked (no 500ms rounded to an entry expired on arrival, no 10^11
    /// days wrapped to another date).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "0" | "never" | "permanent" => Ok(Ttl(None)),
            t => match humantime::parse_duration(t) {
                Ok(d) if d.is_zero() => Ok(Ttl(None)),
                Ok(d) if d.subsec_nanos() != 0 => Err(format!(
                    "'{t}' is not a whole number of seconds; TTLs are kept in seconds (e.g. 1s, 90s)"
                )),
                Ok(d) if d > crate::policy::MAX_TTL => Err(format!(
                    "'{t}' is longer than ten years; use 0 for no expiry"
                )),
                Ok(d) => Ok(Ttl(Some(d))),
                Err(e) => Err(format!(
                    "'{t}' is not a duration ({e}); examples: 90s, 10m, 1h, 2d"
                )),
            },
        }
    }
}

/// A reason kept with a list entry: one line of printable text (a newline
/// or escape sequence would break `list` and the audit log's readers).
fn reason(s: &str) -> Result<String, String> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!(
            "the reason contains a control character ({c:?}); give one line of text"
        )),
        None => Ok(s.to_owned()),
    }
}

/// `3723` → `1h 2m 3s`.
fn human_secs(secs: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}
