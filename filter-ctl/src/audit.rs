//! The audit log: one JSON object per line, with a timestamp and an event
//! name, for promotions, expiries, admin actions and controller life-cycle.
//! Writing it must never stop the controller: failures are logged and the
//! next line tries again.

use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    time::SystemTime,
};

use serde_json::{Map, Value};

pub struct AuditLog {
    path: PathBuf,
    file: Option<File>,
}

impl AuditLog {
    /// Opens (creating directories and file, mode 0640) for appending.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        let mut log = AuditLog {
            path: path.to_owned(),
            file: None,
        };
        log.file = Some(log.reopen()?);
        Ok(log)
    }

    fn reopen(&self) -> std::io::Result<File> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
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

    /// Appends `{"ts": ..., "event": event, ...fields}`.
    pub fn record(&mut self, event: &str, fields: Value) {
        let mut obj = Map::new();
        obj.insert(
            "ts".into(),
            humantime::format_rfc3339_millis(SystemTime::now())
                .to_string()
                .into(),
        );
        obj.insert("event".into(), event.into());
        if let Value::Object(extra) = fields {
            obj.extend(extra);
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
        if let Err(e) = written {
            log::error!(
                "audit log {}: {e}; lost: {}",
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
    fn appends_json_lines_with_timestamp_and_event() {
        let dir = std::env::temp_dir().join(format!("filter-audit-test-{}", std::process::id()));
        let path = dir.join("sub/audit.jsonl");
        let mut log = AuditLog::open(&path).unwrap();
        log.record(
            "promote",
            serde_json::json!({"source": "192.0.2.1/32", "rate": 512.0}),
        );
        log.record("stop", serde_json::json!({}));
        drop(log);
        // Reopening appends.
        AuditLog::open(&path).unwrap().record("start", Value::Null);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["event"], "promote");
        assert_eq!(lines[0]["source"], "192.0.2.1/32");
        assert!(lines[0]["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(lines[2]["event"], "start");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
