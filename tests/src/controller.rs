//! The real `filter-ctl run` in the rig's server namespace, for integration
//! tests and the demo. Dropping [`Controller`] stops the process, detaches
//! the filter, removes its pins and files, then the rig goes.

use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    netns::{unique, BpfFs},
    rig::{Rig, SRV_ATT_IF, SRV_CLI_IF},
};

/// The `filter-ctl` binary next to the running test or tool (cargo puts
/// both in target/<profile>), or `$FILTER_CTL_BIN`.
pub fn ctl_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FILTER_CTL_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("filter-ctl");
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p filter-ctl` (cargo xtask test does) or set FILTER_CTL_BIN",
        bin.display()
    );
    bin
}

pub struct Controller {
    pub dir: PathBuf,
    pub policy: PathBuf,
    pub pin: PathBuf,
    pub socket: PathBuf,
    pub audit: PathBuf,
    child: Option<Child>,
    // Dropped after the fields above are used in `drop`, in this order.
    _bpffs: BpfFs,
    pub rig: Rig,
}

impl Controller {
    /// A fresh rig and a controller on both server interfaces; `extra` is
    /// appended to the policy (interval, thresholds, ...).
    pub fn start(extra: &str) -> Controller {
        let rig = Rig::unique();
        let bpffs = BpfFs::new();
        let dir = std::env::temp_dir().join(unique("filter-ctl-"));
        std::fs::create_dir_all(&dir).unwrap();
        let c = Controller {
            policy: dir.join("policy.yaml"),
            pin: bpffs.path("filter"),
            socket: dir.join("ctl.sock"),
            audit: dir.join("audit.jsonl"),
            dir,
            child: None,
            _bpffs: bpffs,
            rig,
        };
        c.write_policy(extra);
        let mut c = c;
        c.spawn();
        c
    }

    /// Replaces the policy file (base keys + `extra`; the base interfaces
    /// unless `extra` names its own).
    pub fn write_policy(&self, extra: &str) {
        let interfaces = match extra.contains("interfaces:") {
            true => String::new(),
            false => format!("interfaces: [{SRV_ATT_IF}, {SRV_CLI_IF}]\n"),
        };
        let text = format!(
            "{interfaces}xdp_mode: native\npin_dir: {}\nstate_dir: {}\ncontrol_socket: {}\naudit: {{ path: {} }}\n{extra}",
            self.pin.display(),
            self.dir.join("state").display(),
            self.socket.display(),
            self.audit.display(),
        );
        std::fs::write(&self.policy, text).unwrap();
    }

    /// Starts `filter-ctl run` and waits until it answers.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.join("run.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.rig.srv.name])
            .arg(ctl_bin())
            .args(["run", "--config"])
            .arg(&self.policy)
            .env("RUST_LOG", "info")
            .env_remove("FILTER_PIN_DIR")
            .env_remove("FILTER_SOCKET")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning filter-ctl run");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.try_status().is_some() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("controller exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "controller not ready: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The controller's process id (`ip netns exec` runs it in place).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("run.log")).unwrap_or_default()
    }

    /// Sends `signal` to the controller and waits for it to exit.
    pub fn kill(&mut self, signal: i32) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("not running");
        // SAFETY: plain kill(2) on our child's pid. `ip netns exec` execs the
        // program, so the pid is the controller's.
        unsafe { libc::kill(child.id() as i32, signal) };
        child.wait().unwrap()
    }

    /// Sends `signal` without waiting (SIGHUP).
    pub fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("not running");
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(child.id() as i32, signal) };
    }

    /// Id of the XDP program attached to `iface` in the server namespace.
    pub fn xdp_prog_id(&self, iface: &str) -> Option<u64> {
        let out = Command::new("ip")
            .args([
                "-n",
                &self.rig.srv.name,
                "-j",
                "-d",
                "link",
                "show",
                "dev",
                iface,
            ])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v[0]["xdp"]["prog"]["id"].as_u64()
    }

    /// `filter-ctl ARGS` against this controller's pins and socket.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(ctl_bin())
            .env("FILTER_PIN_DIR", &self.pin)
            .env("FILTER_SOCKET", &self.socket)
            .env("FILTER_AUDIT_LOG", &self.audit)
            .env_remove("RUST_BACKTRACE")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `ctl` that must succeed; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "filter-ctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ctl_ok(args)).unwrap()
    }

    fn try_status(&self) -> Option<Value> {
        let out = self.ctl(&["status", "--json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    pub fn status(&self) -> Value {
        self.try_status()
            .unwrap_or_else(|| panic!("no status: {}", self.log()))
    }

    /// Verdict totals by reason name.
    pub fn stat(&self, reason: &str) -> u64 {
        let v = self.json(&["stats", "--json"]);
        v["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["reason"] == reason)
            .and_then(|r| r["packets"].as_u64())
            .unwrap_or_else(|| panic!("no reason {reason}"))
    }

    pub fn blocked(&self) -> Vec<String> {
        let v = self.json(&["list", "blocked", "--json"]);
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["net"].as_str().unwrap().to_owned())
            .collect()
    }

    /// A bounded flood from the rig's attacker namespace, on a thread.
    pub fn flood(
        &self,
        kind: crate::attack::Kind,
        src: &str,
        rate: u64,
        secs: u64,
    ) -> std::thread::JoinHandle<crate::attack::Report> {
        let ns = crate::netns::NetNs::existing(&self.rig.att.name);
        let spec = crate::attack::rig_spec(kind, src, rate, Duration::from_secs(secs));
        std::thread::spawn(move || ns.run(move || crate::attack::run(&spec)).expect("flood"))
    }

    /// Attaches an XDP program (the filter, passing everything, with its
    /// own pins) to the client's end of its veth: XDP_TX on a veth reaches
    /// the peer only when NAPI runs there, which an XDP program turns on.
    pub fn xdp_on_client_side(&self) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.rig.cli.name])
            .arg(ctl_bin())
            .arg("--pin-dir")
            .arg(self.pin.with_file_name("client-side"))
            .args(["attach", crate::rig::CLI_IF, "--xdp-mode", "native"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A bounded IPv6 SYN flood from random /64s, on a thread.
    pub fn flood_v6(&self, rate: u64, secs: u64) -> std::thread::JoinHandle<crate::attack::Report> {
        let ns = crate::netns::NetNs::existing(&self.rig.att.name);
        let spec = crate::attack::rig_spec_v6(rate, Duration::from_secs(secs));
        std::thread::spawn(move || ns.run(move || crate::attack::run(&spec)).expect("flood"))
    }

    pub fn audit_events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
            .collect()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
        let _ = self.ctl(&["detach", "--all", "--purge"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
