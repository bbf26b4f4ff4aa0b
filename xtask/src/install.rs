//! `cargo xtask install`: the release binary, the systemd unit, a default
//! policy, shell completions and the man page, under a prefix (and a
//! staging root for packagers). An existing policy is never overwritten.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

/// Where the shipped unit expects the binary; rewritten to the prefix.
const UNIT_EXEC: &str = "/usr/local/sbin/filter-ctl";

pub struct Install {
    pub prefix: PathBuf,
    pub destdir: PathBuf,
    /// A filter-ctl already built (else a release build is made).
    pub binary: Option<PathBuf>,
}

/// `destdir` + an absolute `path`.
fn staged(destdir: &Path, path: &Path) -> PathBuf {
    destdir.join(path.strip_prefix("/").unwrap_or(path))
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    println!("installed {} ({mode:o})", path.display());
    Ok(())
}

/// What `filter-ctl ARGS` prints.
fn output_of(binary: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new(binary)
        .args(args)
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !out.status.success() {
        bail!(
            "{} {}: {}",
            binary.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

pub fn install(root: &Path, opts: &Install) -> Result<()> {
    if !opts.prefix.is_absolute() {
        bail!(
            "--prefix must be an absolute path, got {}",
            opts.prefix.display()
        );
    }
    let binary = match &opts.binary {
        Some(b) => b.clone(),
        None => {
            super::run(super::cargo(root).args(["build", "--release", "--package", "filter-ctl"]))?;
            root.join("target/release/filter-ctl")
        }
    };
    let (dest, prefix) = (&opts.destdir, &opts.prefix);
    let bin_path = prefix.join("sbin/filter-ctl");
    let bytes = fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
    write(&staged(dest, &bin_path), &bytes, 0o755)?;

    let unit = fs::read_to_string(root.join("packaging/systemd/filter-ctl.service"))?;
    let unit = unit.replace(UNIT_EXEC, &bin_path.display().to_string());
    write(
        &staged(dest, Path::new("/etc/systemd/system/filter-ctl.service")),
        unit.as_bytes(),
        0o644,
    )?;

    let policy = staged(dest, Path::new("/etc/filter/policy.yaml"));
    if policy.exists() {
        println!("kept {} (not overwritten)", policy.display());
    } else {
        write(
            &policy,
            &output_of(&binary, &["policy", "defaults"])?,
            0o640,
        )?;
        fs::set_permissions(
            policy.parent().expect("has a parent"),
            fs::Permissions::from_mode(0o750),
        )?;
    }

    let share = prefix.join("share");
    for (shell, path) in [
        ("bash", "bash-completion/completions/filter-ctl"),
        ("zsh", "zsh/site-functions/_filter-ctl"),
        ("fish", "fish/vendor_completions.d/filter-ctl.fish"),
    ] {
        let text = output_of(&binary, &["completions", shell])?;
        write(&staged(dest, &share.join(path)), &text, 0o644)?;
    }
    let man = output_of(&binary, &["manpage"])?;
    write(
        &staged(dest, &share.join("man/man8/filter-ctl.8")),
        &man,
        0o644,
    )?;
    println!(
        "next: set `interfaces:` in /etc/filter/policy.yaml, then \
         systemctl daemon-reload && systemctl enable --now filter-ctl"
    );
    Ok(())
}
