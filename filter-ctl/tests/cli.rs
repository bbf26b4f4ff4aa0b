//! The `filter-ctl` binary as an operator uses it: help text that matches
//! docs/cli.md, and bad input of every kind answered with one clear line, a
//! non-zero exit and no change.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use clap::CommandFactory as _;
use filter_ctl::cli::Cli;

const BIN: &str = env!("CARGO_BIN_EXE_filter-ctl");
const MARK_BEGIN: &str =
    "<!-- BEGIN GENERATED HELP: UPDATE_CLI_DOCS=1 cargo test -p filter-ctl --test cli -->";
const MARK_END: &str = "<!-- END GENERATED HELP -->";

fn help_reference() -> String {
    let mut root = Cli::command();
    root.build();
    let mut out = format!(
        "### filter-ctl\n\n```text\n{}```\n",
        root.render_long_help()
    );
    for sub in root.get_subcommands_mut() {
        if sub.get_name() == "help" {
            continue;
        }
        let name = sub.get_name().to_owned();
        out.push_str(&format!(
            "\n### filter-ctl {name}\n\n```text\n{}```\n",
            sub.render_long_help()
        ));
        // Nested verbs (`set threshold`, `policy check`) too.
        for inner in sub.get_subcommands_mut() {
            if inner.get_name() == "help" {
                continue;
            }
            let inner_name = inner.get_name().to_owned();
            out.push_str(&format!(
                "\n#### filter-ctl {name} {inner_name}\n\n```text\n{}```\n",
                inner.render_long_help()
            ));
        }
    }
    out
}

/// docs/cli.md must carry the current `--help` of every verb. Regenerate
/// with `UPDATE_CLI_DOCS=1 cargo test -p filter-ctl --test cli`.
#[test]
fn cli_reference_matches_help() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/cli.md");
    let doc = std::fs::read_to_string(&path).expect("docs/cli.md");
    let (head, rest) = doc
        .split_once(MARK_BEGIN)
        .expect("begin marker in docs/cli.md");
    let (_, tail) = rest
        .split_once(MARK_END)
        .expect("end marker in docs/cli.md");
    let fresh = format!(
        "{head}{MARK_BEGIN}\n\n{}\n{MARK_END}{tail}",
        help_reference()
    );
    if std::env::var_os("UPDATE_CLI_DOCS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    } else {
        assert!(
            doc == fresh,
            "docs/cli.md is out of date with --help: run UPDATE_CLI_DOCS=1 cargo test -p filter-ctl --test cli"
        );
    }
}

/// docs/policy.md must carry the current default policy.
#[test]
fn policy_reference_carries_the_default_policy() {
    const BEGIN: &str =
        "<!-- BEGIN DEFAULT POLICY: UPDATE_CLI_DOCS=1 cargo test -p filter-ctl --test cli -->";
    const END: &str = "<!-- END DEFAULT POLICY -->";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/policy.md");
    let doc = std::fs::read_to_string(&path).expect("docs/policy.md");
    let (head, rest) = doc.split_once(BEGIN).expect("begin marker");
    let (_, tail) = rest.split_once(END).expect("end marker");
    let fresh = format!(
        "{head}{BEGIN}\n\n```yaml\n{}```\n\n{END}{tail}",
        filter_ctl::policy::DEFAULT_POLICY
    );
    if std::env::var_os("UPDATE_CLI_DOCS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    } else {
        assert!(doc == fresh, "docs/policy.md is out of date: run UPDATE_CLI_DOCS=1 cargo test -p filter-ctl --test cli");
    }
    // And `policy defaults` prints exactly that.
    let out = Command::new(BIN)
        .args(["policy", "defaults"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        filter_ctl::policy::DEFAULT_POLICY
    );
}

fn ctl(pin: &Path, args: &[&str]) -> Output {
    // Edits with no controller are audited: not into the host's log.
    let audit =
        std::env::temp_dir().join(format!("filter-clitest-audit-{}.jsonl", std::process::id()));
    Command::new(BIN)
        .env("FILTER_PIN_DIR", pin)
        .env("FILTER_AUDIT_LOG", audit)
        .env_remove("RUST_BACKTRACE")
        .args(args)
        .output()
        .expect("running filter-ctl")
}

/// A failure: non-zero exit, nothing on stdout, exactly one line on stderr
/// containing `needle`.
fn assert_one_line_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line:\n{stderr}"
    );
    assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
}

#[test]
fn bad_arguments_are_rejected_before_anything_is_opened() {
    let nowhere = Path::new("/nonexistent/filter");
    let cases: [(&[&str], &str); 7] = [
        (
            &["block", "not-an-ip"],
            "'not-an-ip' is not an IP address or CIDR",
        ),
        (&["block", "10.0.0.0/33"], "is not an IP address or CIDR"),
        (&["block", "10.0.0.5/24"], "did you mean 10.0.0.0/24"),
        (&["allow", "2001:db8::/129"], "is not an IP address or CIDR"),
        (&["unblock", "1.2.3"], "is not an IP address or CIDR"),
        (&["stats"], "is not on a bpf filesystem"),
        (
            &["attach", "no-such-if0"],
            "no such network interface 'no-such-if0'",
        ),
    ];
    for (args, needle) in cases {
        assert_one_line_error(&ctl(nowhere, args), needle);
    }
    // A bad policy file: one line naming the field and the line.
    let bad = std::env::temp_dir().join(format!("filter-bad-policy-{}.yaml", std::process::id()));
    std::fs::write(&bad, "interval: 1s\nthresholds:\n  syn: lots\n").unwrap();
    let out = ctl(nowhere, &["policy", "check", bad.to_str().unwrap()]);
    assert_one_line_error(&out, "thresholds.syn");
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3"));
    std::fs::write(&bad, "interval: 1s\n").unwrap();
    assert!(ctl(nowhere, &["policy", "check", bad.to_str().unwrap()])
        .status
        .success());
    std::fs::remove_file(&bad).unwrap();
    assert_one_line_error(
        &ctl(nowhere, &["policy", "check", "/nonexistent.yaml"]),
        "cannot read",
    );
    // Verbs that need the controller say so when none runs.
    let out = Command::new(BIN)
        .args([
            "--socket",
            "/nonexistent/ctl.sock",
            "set",
            "threshold",
            "syn",
            "5",
        ])
        .output()
        .unwrap();
    assert_one_line_error(&out, "no controller is running");

    // Clap's own errors (bad duration, unknown verb) exit 2 with usage help.
    let out = ctl(nowhere, &["block", "1.2.3.4", "--ttl", "5x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("examples: 90s, 10m, 1h, 2d"));
    assert_eq!(ctl(nowhere, &["frobnicate"]).status.code(), Some(2));
    // TTLs are whole seconds up to ten years, reasons one line of text:
    // refused before anything is sent or opened.
    for (args, says) in [
        (
            &["block", "1.2.3.4", "--ttl", "500ms"][..],
            "not a whole number of seconds",
        ),
        (
            &["block", "1.2.3.4", "--ttl", "1500ms"][..],
            "not a whole number of seconds",
        ),
        (
            &["block", "1.2.3.4", "--ttl", "99999999999days"][..],
            "longer than ten years",
        ),
        (
            &["allow", "1.2.3.4", "--reason", "two\nlines"][..],
            "control character",
        ),
        (
            &["block", "1.2.3.4", "--reason", "\u{1b}[31mred"][..],
            "control character",
        ),
    ] {
        let out = ctl(nowhere, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(2) && err.contains(says),
            "{args:?}: {err}"
        );
    }
    assert_one_line_error(
        &ctl(nowhere, &["block", "::ffff:10.1.2.3"]),
        "IPv4-mapped IPv6 address, which never matches",
    );
    // A misspelt threshold is refused by the parser, before any socket is
    // tried (here: none exists), naming the valid ones.
    for args in [
        &["set", "threshold", "sny", "5"][..],
        &["get", "threshold", "sny"][..],
    ] {
        let out = Command::new(BIN)
            .args(["--socket", "/nonexistent/ctl.sock"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("invalid value 'sny'") && err.contains("syn_ack"),
            "{err}"
        );
        assert!(!err.contains("no controller"), "{err}");
    }
}

static N: AtomicU32 = AtomicU32::new(0);

/// A veth pair plus a private pin directory under /sys/fs/bpf; both removed
/// on drop, also when the test fails.
struct Rig {
    iface: String,
    pin: PathBuf,
}

impl Rig {
    fn new() -> Rig {
        // SAFETY: no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root");
        let n = N.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}x{n}", std::process::id() % 100_000);
        let iface = format!("fc{id}");
        let status = Command::new("ip")
            .args([
                "link",
                "add",
                &iface,
                "type",
                "veth",
                "peer",
                "name",
                &format!("fp{id}"),
            ])
            .status()
            .unwrap();
        assert!(status.success());
        Rig {
            iface,
            pin: PathBuf::from(format!("/sys/fs/bpf/filter-clitest-{id}")),
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = ctl(&self.pin, &["detach", "--all", "--purge"]);
        let _ = std::fs::remove_dir_all(&self.pin);
        let _ = Command::new("ip")
            .args(["link", "del", &self.iface])
            .status();
    }
}

fn list_blocked(pin: &Path) -> Vec<String> {
    let out = ctl(pin, &["list", "blocked", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["net"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn bad_input_on_a_running_filter_changes_nothing() {
    let rig = Rig::new();
    let pin = rig.pin.to_str().unwrap();
    let out = ctl(&rig.pin, &["attach", &rig.iface, "--xdp-mode", "skb"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Attaching again is a no-op, not an error and not a second program.
    let again = ctl(&rig.pin, &["attach", &rig.iface]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already attached"));

    assert!(ctl(
        &rig.pin,
        &["block", "203.0.113.7", "--ttl", "1h", "--reason", "first"]
    )
    .status
    .success());
    let before = list_blocked(&rig.pin);
    assert_eq!(before, ["203.0.113.7/32"]);

    // One bad argument among good ones: nothing is applied.
    let out = ctl(
        &rig.pin,
        &["block", "198.51.100.1", "bogus", "198.51.100.2"],
    );
    assert_one_line_error(&out, "'bogus' is not an IP address or CIDR");
    let out = ctl(&rig.pin, &["unblock", "203.0.113.7", "10.0.0.1/8"]);
    assert_one_line_error(&out, "did you mean 10.0.0.0/8");
    assert_eq!(list_blocked(&rig.pin), before);

    // Unknown entries, unknown interfaces, wrong directories.
    assert_one_line_error(
        &ctl(&rig.pin, &["unblock", "192.0.2.1"]),
        "not in the block list: 192.0.2.1/32",
    );
    assert_one_line_error(
        &ctl(&rig.pin, &["detach", "no-such-if0"]),
        "no-such-if0 is not attached",
    );
    assert_one_line_error(
        &ctl(Path::new("/tmp"), &["list"]),
        "/tmp is not on a bpf filesystem",
    );
    assert_one_line_error(
        &ctl(Path::new("/sys/fs/bpf/filter-clitest-absent"), &["list"]),
        "no filter state in /sys/fs/bpf/filter-clitest-absent",
    );

    // Without privileges: a clear line that says so, and no change.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "--pin-dir",
            pin,
        ])
        .args(["block", "198.51.100.3"])
        .output()
        .expect("setpriv (util-linux)");
    assert_one_line_error(&out, "needs root");
    assert_eq!(list_blocked(&rig.pin), before);

    // Stats and list work and agree with what is attached.
    let out = ctl(&rig.pin, &["stats", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["attached"][0].as_str(), Some(rig.iface.as_str()));
    assert_eq!(
        v["reasons"].as_array().unwrap().len(),
        filter_common::Reason::COUNT
    );

    // Unblock, then detach with purge removes every pin.
    assert!(ctl(&rig.pin, &["unblock", "203.0.113.7"]).status.success());
    assert!(list_blocked(&rig.pin).is_empty());
    assert!(ctl(&rig.pin, &["detach", &rig.iface, "--purge"])
        .status
        .success());
    assert!(!rig.pin.exists());
}
