//! What `cargo xtask install` puts on a host: the binary, the systemd unit
//! (it must pass `systemd-analyze verify` and keep a low exposure score),
//! a default policy never overwritten, shell completions and the man page.
//! Installed into a temporary staging root; nothing on the host changes.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use filter_tests::{controller::ctl_bin, Scratch};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// `cargo xtask install` into `dest` with the already built filter-ctl.
fn install(dest: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args(["run", "--quiet", "--package", "xtask", "--", "install"])
        .arg("--destdir")
        .arg(dest)
        .arg("--binary")
        .arg(ctl_bin())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn install_puts_binary_unit_policy_completions_and_man_page_in_place() {
    let s = Scratch::new("install");
    let d = &s.0;
    install(d);
    let usr = d.join("usr/local");
    assert_eq!(mode(&usr.join("sbin/filter-ctl")), 0o755);
    let unit = d.join("etc/systemd/system/filter-ctl.service");
    assert_eq!(mode(&unit), 0o644);
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        text.contains("ExecStart=/usr/local/sbin/filter-ctl run --config /etc/filter/policy.yaml"),
        "{text}"
    );
    // The default policy, private to root's group, and valid.
    let policy = d.join("etc/filter/policy.yaml");
    assert_eq!(mode(&policy), 0o640);
    assert_eq!(mode(&d.join("etc/filter")), 0o750);
    let check = Command::new(ctl_bin())
        .args(["policy", "check"])
        .arg(&policy)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    for (path, needle) in [
        ("share/bash-completion/completions/filter-ctl", "filter-ctl"),
        (
            "share/zsh/site-functions/_filter-ctl",
            "#compdef filter-ctl",
        ),
        (
            "share/fish/vendor_completions.d/filter-ctl.fish",
            "complete -c filter-ctl",
        ),
        ("share/man/man8/filter-ctl.8", ".TH filter-ctl 8"),
    ] {
        let text = std::fs::read_to_string(usr.join(path)).unwrap();
        assert!(text.contains(needle), "{path}: no {needle}");
        // Every verb is there.
        assert!(
            text.contains("reload") && text.contains("unblock"),
            "{path}"
        );
    }
    // An operator's policy is never overwritten by a second install.
    std::fs::write(&policy, "interfaces: [eth9]\n").unwrap();
    install(d);
    assert_eq!(
        std::fs::read_to_string(&policy).unwrap(),
        "interfaces: [eth9]\n"
    );
}

#[test]
fn the_systemd_unit_verifies_and_keeps_a_low_exposure() {
    let s = Scratch::new("unit");
    let d = &s.0;
    install(d);
    // Verified as installed, with ExecStart and the man page it names
    // pointed into the staging root (verify runs `man filter-ctl(8)`).
    let unit = d.join("filter-ctl.service");
    let text = std::fs::read_to_string(d.join("etc/systemd/system/filter-ctl.service"))
        .unwrap()
        .replace(
            "/usr/local/sbin/filter-ctl",
            &d.join("usr/local/sbin/filter-ctl").display().to_string(),
        );
    std::fs::write(&unit, text).unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .env("MANPATH", d.join("usr/local/share/man"))
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && stderr.trim().is_empty(),
        "{stderr}"
    );
    // systemd's own scoring of the sandbox: 0 (locked down) to 10.
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&security.stdout);
    let score: f64 = out
        .lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no score in: {out}"));
    eprintln!("systemd-analyze security: exposure {score}");
    assert!(score <= 3.0, "exposure {score}: {out}");
}
