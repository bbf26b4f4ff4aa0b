//! The audit log: one JSON object per line, with a timestamp and an event
//! name, for promotions, expiries, admin actions and controller life-cycle.
//! Writing it must never stop the controller: failures are logged and the
//! next line tries again.

use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    time::SystemTime,
};

use ipnet::IpNet;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{kernel::maps::ListKind, model::metric::Metric, service::ops::Caller};

/// Everything the audit log records, one variant per event: the only
/// vocabulary of the log (and later of the webhook and the metrics).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    Start {
        policy: PathBuf,
        interfaces: Vec<String>,
        /// Interfaces whose pinned link was re-used.
        readopted: Vec<String>,
        pid: u32,
    },
    Stop {
        signal: String,
        detached: bool,
    },
    Promote {
        source: IpNet,
        /// `syn_flood`, `port_scan`, `idle_connections`, ...
        reason: String,
        /// `block` or `restrict`.
        action: &'static str,
        /// `all`, or the restricted classes.
        scope: String,
        rate: f64,
        threshold: u64,
        ttl_s: u64,
        offense: u32,
    },
    /// An interface the controller attached has no live filter any more
    /// (detached from outside, or its device went away).
    InterfaceLost {
        iface: String,
    },
    /// The filter is back on an interface that was lost.
    InterfaceRestored {
        iface: String,
    },
    /// `auto` switched verification on: the SYN rate reached the alarm.
    VerificationOn {
        syn_rate: u64,
        alarm_syn_rate: u64,
    },
    /// `auto` with `escalate`: cookies took over from first-SYN drop.
    VerificationEscalated {
        retry_rate: u64,
        escalate_retry_rate: u64,
    },
    /// `auto` switched it off: the rate stayed calm for `hold`.
    VerificationOff {
        syn_rate: u64,
        calm_syn_rate: u64,
    },
    /// An operator set the mode (`override: false`: back to the policy's).
    VerificationMode {
        old: crate::policy::VerifyMode,
        new: crate::policy::VerifyMode,
        #[serde(rename = "override")]
        overridden: bool,
        by: Caller,
    },
    /// Promotions are being skipped: the block list has no room left
    /// outside the admin and policy reserve.
    BlockListFull {
        skipped: u64,
    },
    /// Promotions fit again.
    BlockListRoom {
        skipped_total: u64,
    },
    /// A block covering a restriction was added; the restriction went.
    RestrictionLifted {
        net: IpNet,
        scope: String,
        inside: IpNet,
    },
    Expire {
        list: ListKind,
        net: IpNet,
        reason: String,
        note: String,
    },
    AdminBlock {
        net: IpNet,
        ttl_s: Option<u64>,
        reason: String,
        by: Caller,
    },
    AdminAllow {
        net: IpNet,
        ttl_s: Option<u64>,
        reason: String,
        by: Caller,
    },
    AdminUnblock {
        net: IpNet,
        by: Caller,
    },
    AdminDisallow {
        net: IpNet,
        by: Caller,
    },
    SetThreshold {
        name: Metric,
        old: u64,
        new: u64,
        /// An override was set (false: back to the policy's value).
        #[serde(rename = "override")]
        overridden: bool,
        by: Caller,
    },
    Reload {
        policy: PathBuf,
        interfaces: Vec<String>,
        /// Who asked: a client, or the controller itself on SIGHUP.
        by: Caller,
    },
    ReloadRejected {
        error: String,
    },
    AuditPruned {
        lines: usize,
        files: usize,
        retention: String,
    },
    /// Written as the last line of the old file.
    AuditMoved {
        to: PathBuf,
    },
}

/// What [`AuditLog::prune`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub lines: usize,
    pub files: usize,
}

pub struct AuditLog {
    path: PathBuf,
    file: Option<File>,
    /// Records that could not be written (counted, logged, never fatal).
    write_errors: u64,
    /// The UTC day (`YYYY-MM-DD`) of the lines in the current file: at the
    /// first record of another day the file is rotated to `PATH.DAY`.
    day: Option<String>,
    /// Where alert-worthy records also go (the webhook's queue), and how
    /// many it had no room for.
    tap: Option<tokio::sync::mpsc::Sender<Value>>,
    alerts_dropped: u64,
}

/// The records that are also alerts.
const ALERTS: [&str; 7] = [
    "promote",
    "block_list_full",
    "verification_on",
    "verification_off",
    "verification_escalated",
    "verification_mode",
    "interface_lost",
];

/// `YYYY-MM-DD` of `t` in UTC.
fn utc_day(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()[..10].to_owned()
}

impl AuditLog {
    /// Opens (creating directories and file, mode 0640) for appending.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        let mut log = AuditLog {
            path: path.to_owned(),
            file: None,
            write_errors: 0,
            day: None,
            tap: None,
            alerts_dropped: 0,
        };
        let file = log.reopen()?;
        // A file with lines in it holds the day of its last write.
        let meta = file.metadata()?;
        if meta.is_file() && meta.len() > 0 {
            log.day = meta.modified().ok().map(utc_day);
        }
        log.file = Some(file);
        Ok(log)
    }

    /// A log opened at its first record: for callers that may never write
    /// (an offline read must not need a writable log directory).
    pub fn unopened(path: &Path) -> AuditLog {
        AuditLog {
            path: path.to_owned(),
            file: None,
            write_errors: 0,
            day: None,
            tap: None,
            alerts_dropped: 0,
        }
    }

    /// Sends alert-worthy records to `tap` too (never waiting: a full
    /// queue drops the alert and counts it).
    pub fn set_tap(&mut self, tap: Option<tokio::sync::mpsc::Sender<Value>>) {
        self.tap = tap;
    }

    pub fn take_tap(&mut self) -> Option<tokio::sync::mpsc::Sender<Value>> {
        self.tap.take()
    }

    /// Alerts dropped for want of room in the queue.
    pub fn alerts_dropped(&self) -> u64 {
        self.alerts_dropped
    }

    /// Where the lines of `day` go when the day is over.
    pub fn rotated_path(&self, day: &str) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_owned();
        name.push(format!(".{day}"));
        self.path.with_file_name(name)
    }

    /// Moves the current file's lines (of `day`) to `PATH.DAY`, appending if
    /// that exists already; the next record opens a new file.
    fn rotate(&mut self, day: &str) -> std::io::Result<()> {
        self.file = None;
        let to = self.rotated_path(day);
        if to.exists() {
            let mut out = OpenOptions::new().append(true).open(&to)?;
            std::io::copy(&mut File::open(&self.path)?, &mut out)?;
            std::fs::remove_file(&self.path)
        } else {
            std::fs::rename(&self.path, &to)
        }
    }

    /// Records lost since this log was opened.
    pub fn write_errors(&self) -> u64 {
        self.write_errors
    }

    fn reopen(&self) -> std::io::Result<File> {
        if let Some(dir) = self.path.parent() {
            // Directories it makes are 0750 (owner and group only).
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)?;
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&self.path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes what is older than `now - retention`: rotated files of days
    /// before it, and the current file's lines before it. For the lines:
    /// rewriting the file atomically with its mode and owner kept. Lines
    /// are appended in time order, so only the file's head is examined, up
    /// to the first line within the retention: the common hourly call reads
    /// one line. The file is streamed, never read whole. Lines that cannot
    /// be read as audit lines (a torn write, cut UTF-8) are kept: never
    /// delete what we do not understand. Returns how many lines went.
    pub fn prune(
        &mut self,
        retention: std::time::Duration,
        now: SystemTime,
    ) -> std::io::Result<Pruned> {
        let cutoff = now.checked_sub(retention).unwrap_or(SystemTime::UNIX_EPOCH);
        let files = self.prune_rotated(cutoff)?;
        let lines = self.prune_lines(cutoff)?;
        Ok(Pruned { lines, files })
    }

    /// Deletes the rotated files whose whole day is before `cutoff`.
    fn prune_rotated(&self, cutoff: SystemTime) -> std::io::Result<usize> {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return Ok(0);
        };
        let prefix = format!("{}.", name.to_string_lossy());
        let cutoff_day = utc_day(cutoff);
        let mut gone = 0;
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(day) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
                continue;
            };
            // Only PATH.YYYY-MM-DD: nothing else is ours to delete.
            let is_day =
                day.len() == 10 && humantime::parse_rfc3339(&format!("{day}T00:00:00Z")).is_ok();
            if is_day && *day < *cutoff_day {
                std::fs::remove_file(entry.path())?;
                gone += 1;
            }
        }
        Ok(gone)
    }

    /// Drops the current file's lines older than `cutoff` (see `prune`).
    fn prune_lines(&mut self, cutoff: SystemTime) -> std::io::Result<usize> {
        use std::io::{BufRead as _, BufReader, BufWriter};
        // Some(true): expired; Some(false): within retention; None: unknown.
        let expired = |line: &[u8]| -> Option<bool> {
            let v: Value = serde_json::from_slice(line).ok()?;
            let t = humantime::parse_rfc3339(v["ts"].as_str()?).ok()?;
            Some(t < cutoff)
        };
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        // Only a regular file is ours to rewrite (a log pointed at a device
        // or a pipe is left alone: /dev/full would read zeros forever).
        if !file.metadata()?.is_file() {
            return Ok(0);
        }
        // Pass 1: how many head lines go (and where the head ends).
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        let (mut dropped, mut head_lines) = (0usize, 0usize);
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            match expired(line.trim_ascii_end()) {
                Some(false) => break,
                Some(true) => dropped += 1,
                None => {}
            }
            head_lines += 1;
        }
        if dropped == 0 {
            return Ok(0);
        }
        // Pass 2: the kept head lines, then the rest as it is.
        let mut reader = BufReader::new(File::open(&self.path)?);
        let meta = reader.get_ref().metadata()?;
        let tmp = self.path.with_extension("pruning");
        let out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        std::os::unix::fs::fchown(&out, Some(meta.uid()), Some(meta.gid()))?;
        out.set_permissions(meta.permissions())?;
        let mut out = BufWriter::new(out);
        for _ in 0..head_lines {
            line.clear();
            reader.read_until(b'\n', &mut line)?;
            if expired(line.trim_ascii_end()) != Some(true) {
                out.write_all(&line)?;
            }
        }
        std::io::copy(&mut reader, &mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        // The old handle points at the replaced file.
        self.file = Some(self.reopen()?);
        Ok(dropped)
    }

    /// Appends `{"ts": ..., "event": ..., ...its fields}`.
    pub fn record(&mut self, event: &AuditEvent) {
        self.record_at(event, SystemTime::now());
    }

    /// [`record`](Self::record) at `now`: the first record of a new UTC day
    /// rotates the file.
    pub fn record_at(&mut self, event: &AuditEvent, now: SystemTime) {
        let fields = match serde_json::to_value(event) {
            Ok(Value::Object(fields)) => fields,
            _ => Map::new(),
        };
        self.write_at(fields, now);
    }

    /// Appends `{"ts": ..., ...fields}` at `now` (any JSON-lines log kept
    /// like this one: the API's access log is another).
    pub fn write_at(&mut self, fields: Map<String, Value>, now: SystemTime) {
        let today = utc_day(now);
        if let Some(day) = self.day.clone().filter(|d| *d != today) {
            if let Err(e) = self.rotate(&day) {
                log::error!("rotating audit log {}: {e}", self.path.display());
            }
        }
        let mut obj = Map::new();
        obj.insert(
            "ts".into(),
            humantime::format_rfc3339_millis(now).to_string().into(),
        );
        obj.extend(fields);
        let alert = obj
            .get("event")
            .and_then(Value::as_str)
            .is_some_and(|e| ALERTS.contains(&e));
        if let (true, Some(tap)) = (alert, &self.tap) {
            if tap.try_send(Value::Object(obj.clone())).is_err() {
                self.alerts_dropped += 1;
            }
        }
        let mut line = Value::Object(obj).to_string();
        line.push('\n');
        if self.file.is_none() {
            self.file = self.reopen().ok();
        }
        let written = match self.file.as_mut() {
            Some(f) => f.write_all(line.as_bytes()).and_then(|()| f.flush()),
            None => Err(std::io::Error::other("not open")),
        };
        if written.is_ok() {
            self.day = Some(today);
        }
        if let Err(e) = written {
            self.write_errors += 1;
            log::error!(
                "log {}: {e}; lost: {}",
                self.path.display(),
                line.trim_end()
            );
            self.file = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_mode_and_survives_a_torn_line_with_cut_utf8() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("filter-audit-mode-{}", std::process::id()));
        let path = dir.join("audit.jsonl");
        std::fs::create_dir_all(&dir).unwrap();
        let mut body = b"{\"ts\":\"2026-01-01T00:00:00.000Z\",\"event\":\"promote\"}\n".to_vec();
        body.extend_from_slice(b"{\"ts\":\"2026-11-21T00:00:00.000Z\",\"event\":\"start\"}\n");
        // A write cut short by a full disk, in the middle of a UTF-8 character.
        body.extend_from_slice(b"{\"ts\":\"2026-11-21T01:00:00.000Z\",\"note\":\"caf\xc3");
        std::fs::write(&path, &body).unwrap();
        let mut log = AuditLog::open(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let now = humantime::parse_rfc3339("2026-11-22T00:00:00Z").unwrap();
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(log.prune(180 * day, now).unwrap().lines, 1);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "the rewrite changed the mode");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            body[body.iter().position(|&b| b == b'\n').unwrap() + 1..]
        );
        // And later prunes do not fail on it.
        assert_eq!(log.prune(180 * day, now).unwrap().lines, 0);
        let later = humantime::parse_rfc3339("2027-12-01T00:00:00Z").unwrap();
        assert_eq!(log.prune(180 * day, later).unwrap().lines, 1);
        let torn = &body[body.iter().rposition(|&b| b == b'\n').unwrap() + 1..];
        assert_eq!(std::fs::read(&path).unwrap(), torn);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn prune_drops_lines_older_than_the_retention_only() {
        let dir = std::env::temp_dir().join(format!("filter-audit-prune-{}", std::process::id()));
        let path = dir.join("audit.jsonl");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            &path,
            concat!(
                "{\"ts\":\"2026-01-01T00:00:00.000Z\",\"event\":\"promote\"}\n",
                "not json at all\n",
                "{\"ts\":\"2026-06-01T00:00:00.000Z\",\"event\":\"expire\"}\n",
                "{\"ts\":\"2026-11-20T00:00:00.000Z\",\"event\":\"start\"}\n",
            ),
        )
        .unwrap();
        let mut log = AuditLog::open(&path).unwrap();
        // A fake "now": 2026-11-22; 180 days back is 2026-05-26.
        let now = humantime::parse_rfc3339("2026-11-22T00:00:00Z").unwrap();
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(log.prune(180 * day, now).unwrap().lines, 1);
        assert_eq!(log.prune(180 * day, now).unwrap().lines, 0);
        // Writing goes on into the pruned file.
        log.record(&AuditEvent::Stop {
            signal: "SIGTERM".into(),
            detached: false,
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[0], "not json at all");
        assert!(lines[1].contains("expire") && lines[3].contains("stop"));
        // One day back from the fake now: the June and Nov 20 lines go; the
        // unreadable line and the fresh "stop" stay.
        assert_eq!(log.prune(day, now).unwrap().lines, 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failing_write_is_counted_not_fatal_and_directories_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        // /dev/full opens and refuses every write (ENOSPC), even for root.
        let mut log = AuditLog::open(Path::new("/dev/full")).unwrap();
        let event = AuditEvent::AuditMoved {
            to: PathBuf::from("/x"),
        };
        log.record(&event);
        log.record(&event);
        assert_eq!(log.write_errors(), 2);
        // And pruning it returns at once (it reads zeros forever).
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(log.prune(day, SystemTime::now()).unwrap().lines, 0);
        let dir = std::env::temp_dir().join(format!("filter-audit-dirs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut log = AuditLog::open(&dir.join("a/b/audit.jsonl")).unwrap();
        log.record(&event);
        assert_eq!(log.write_errors(), 0);
        for d in [dir.join("a"), dir.join("a/b")] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o007, 0, "{}: {mode:o}", d.display());
        }
        let file = std::fs::metadata(dir.join("a/b/audit.jsonl")).unwrap();
        assert_eq!(file.permissions().mode() & 0o777, 0o640);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotates_at_the_first_record_of_a_new_day_and_deletes_days_past_retention() {
        use std::time::Duration;
        let dir = std::env::temp_dir().join(format!("filter-audit-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("audit.jsonl");
        let mut log = AuditLog::open(&path).unwrap();
        let day = Duration::from_secs(86_400);
        // 2026-12-01T10:00:00Z, then the next three days.
        let d0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_119_200);
        let event = AuditEvent::AuditMoved {
            to: PathBuf::from("/x"),
        };
        for i in 0..4 {
            log.record_at(&event, d0 + day * i);
            log.record_at(&event, d0 + day * i + Duration::from_secs(3600));
        }
        let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count();
        for d in ["2026-12-01", "2026-12-02", "2026-12-03"] {
            assert_eq!(lines(&log.rotated_path(d)), 2, "{d}");
        }
        assert_eq!(lines(&path), 2, "today's two records");
        // Retention 2 days on 2026-12-04 at 11:00: the cutoff is on the 2nd,
        // so only the 1st is wholly past it.
        let p = log
            .prune(2 * day, d0 + day * 3 + Duration::from_secs(3600))
            .unwrap();
        assert_eq!(p, Pruned { lines: 0, files: 1 });
        assert!(!log.rotated_path("2026-12-01").exists());
        assert!(log.rotated_path("2026-12-02").exists());
        // Files that are not ours stay, whatever their name.
        std::fs::write(dir.join("audit.jsonl.notes"), "keep").unwrap();
        let p = log.prune(day, d0 + day * 10).unwrap();
        assert_eq!(p.files, 2);
        assert!(dir.join("audit.jsonl.notes").exists());
        // A reopened log knows its file's day from its last write.
        drop(log);
        let mut log = AuditLog::open(&path).unwrap();
        log.record(&event);
        let today = utc_day(SystemTime::now());
        assert_eq!(log.day.as_deref(), Some(today.as_str()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn appends_json_lines_with_timestamp_and_event() {
        let dir = std::env::temp_dir().join(format!("filter-audit-test-{}", std::process::id()));
        let path = dir.join("sub/audit.jsonl");
        let mut log = AuditLog::open(&path).unwrap();
        log.record(&AuditEvent::AdminBlock {
            net: "192.0.2.1/32".parse().unwrap(),
            ttl_s: Some(60),
            reason: "ticket 1".into(),
            by: Caller::Offline { uid: 0 },
        });
        log.record(&AuditEvent::Stop {
            signal: "SIGTERM".into(),
            detached: false,
        });
        drop(log);
        // Reopening appends.
        AuditLog::open(&path)
            .unwrap()
            .record(&AuditEvent::ReloadRejected { error: "x".into() });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["event"], "admin_block");
        assert_eq!(lines[0]["net"], "192.0.2.1/32");
        assert_eq!(lines[0]["ttl_s"], 60);
        assert_eq!(lines[0]["by"]["via"], "offline");
        assert!(lines[0]["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            (lines[1]["event"].as_str(), lines[1]["detached"].as_bool()),
            (Some("stop"), Some(false))
        );
        assert_eq!(lines[2]["event"], "reload_rejected");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
