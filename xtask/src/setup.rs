//! Prerequisites, installed idempotently. Every step first checks whether
//! its result is already there, so a second run takes well under a second.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{anyhow, bail, Context as _, Result};

/// Debian packages: LLVM 22 for bpf-linker, iproute2/ethtool for the netns
/// rigs, xdp-tools and nftables for benchmark comparisons, hping3 as the rig's second
/// flood generator.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "libxml2-dev",
    "iproute2",
    "ethtool",
    "xdp-tools",
    // nftables netdev ingress, the `bench --veth` comparison.
    "nftables",
    "hping3",
    // systemd-analyze, for the test of the shipped unit.
    "systemd",
    // Real TLS clients for the HTTPS API's tests.
    "curl",
    "openssl",
    // Compiles the kfunc shim of the handover program (filter-ebpf/build.rs).
    "clang-22",
];

const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn ensure(root: &Path) -> Result<()> {
    apt()?;
    nightly(root)?;
    bpf_linker()?;
    Ok(())
}

/// The nightly named in `filter-ebpf/rust-toolchain.toml`.
pub fn ebpf_toolchain(root: &Path) -> Result<String> {
    let path = root.join("filter-ebpf/rust-toolchain.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("channel"))
        .and_then(|rest| rest.split('"').nth(1))
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no channel in {}", path.display()))
}

fn quiet(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn output(cmd: &mut Command) -> String {
    cmd.stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn apt() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .contains("install ok installed")
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "missing Debian packages: {}; run as root or: sudo apt-get install -y {}",
            missing.join(" "),
            missing.join(" ")
        );
    }
    eprintln!("setup: installing {}", missing.join(" "));
    let ok = Command::new("apt-get")
        .args(["update", "-q"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("setup: apt-get update failed; trying the install anyway");
    }
    let status = Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    Ok(())
}

fn nightly(root: &Path) -> Result<()> {
    let toolchain = ebpf_toolchain(root)?;
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        &toolchain,
    ]));
    let has = |c: &str| installed.lines().any(|l| l.starts_with(c));
    if has("rust-src") && has("clippy") {
        return Ok(());
    }
    eprintln!("setup: installing toolchain {toolchain} with rust-src and clippy");
    let status = Command::new("rustup")
        .args(["toolchain", "install", &toolchain, "--profile", "minimal"])
        .args([
            "--component",
            "rust-src",
            "--component",
            "clippy",
            "--component",
            "rustfmt",
        ])
        .status()
        .context("running rustup (is it installed?)")?;
    if !status.success() {
        bail!("rustup toolchain install {toolchain} failed");
    }
    Ok(())
}

fn bpf_linker() -> Result<()> {
    let version = output(Command::new("bpf-linker").arg("--version"));
    if version.contains(BPF_LINKER_VERSION) {
        return Ok(());
    }
    eprintln!("setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about 3 minutes)");
    let path = format!(
        "{LLVM_PREFIX}/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .env("PATH", path)
        .env("LLVM_PREFIX", LLVM_PREFIX)
        // Build with the machine's default toolchain, not ours.
        .env_remove("RUSTUP_TOOLCHAIN")
        .current_dir(std::env::temp_dir())
        .args([
            "install",
            "bpf-linker",
            "--locked",
            "--version",
            BPF_LINKER_VERSION,
        ])
        .args(["--no-default-features", "--features", "llvm-22"])
        .status()
        .context("running cargo install bpf-linker")?;
    if !status.success() {
        bail!("cargo install bpf-linker failed");
    }
    if quiet(Command::new("bpf-linker").arg("--version")) {
        Ok(())
    } else {
        bail!("bpf-linker installed but not on PATH: add ~/.cargo/bin to PATH")
    }
}
