//! Project tasks. Orchestration only: the eBPF object is built by
//! `filter-ctl/build.rs`, the demo and benchmark live in `tests/`.
//!
//!   cargo xtask setup   install prerequisites (idempotent, fast when present)
//!   cargo xtask test    every test: unit, kernel (BPF_PROG_TEST_RUN), netns
//!   cargo xtask demo    the controller stopping a flood in a namespace rig
//!   cargo xtask rig     up | down: the rig, for experiments
//!   cargo xtask attack  a bounded flood from the rig's attacker namespace
//!   cargo xtask bench   ns/packet per verdict beside a bare XDP_DROP, the
//!                       controller at 1M sources (--veth: receiver CPU)
//!   cargo xtask lint    rustfmt and clippy (split for the eBPF crate)
//!   cargo xtask install binary, systemd unit, policy, completions, man page

mod install;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the prerequisites: Debian packages, the pinned nightly with
    /// rust-src, bpf-linker built against LLVM 22.
    Setup,
    /// Run every test (needs root: the kernel and netns tiers load BPF
    /// programs and create namespaces).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Run the demo: the rig, the controller with the default policy, a
    /// bounded SYN flood and a legitimate client; prints what was blocked.
    Demo,
    /// Bring the namespace rig (filt-att, filt-cli, filt-srv) up or down.
    Rig {
        #[arg(value_parser = ["up", "down"])]
        action: String,
    },
    /// Send a bounded flood from the rig's attacker namespace (arguments go
    /// to filter-attack; try `cargo xtask attack syn --help`).
    Attack {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmark the data path through BPF_PROG_TEST_RUN, and the real
    /// controller at a million sources.
    Bench {
        /// Also measure the receiver's CPU per packet of a flood over veth:
        /// bare XDP_DROP, this filter (exact and CIDR blocks), nftables
        /// netdev ingress and xdp-filter.
        #[arg(long)]
        veth: bool,
    },
    /// Check formatting and run clippy with warnings denied.
    Lint,
    /// Install filter-ctl: the release binary (PREFIX/sbin), the systemd
    /// unit (/etc/systemd/system), a default policy (/etc/filter, never
    /// overwritten), shell completions and the man page (PREFIX/share).
    Install {
        #[arg(long, default_value = "/usr/local")]
        prefix: PathBuf,
        /// A staging root every path is placed under (for packaging).
        #[arg(long, default_value = "/")]
        destdir: PathBuf,
        /// Install this filter-ctl instead of building a release one.
        #[arg(long)]
        binary: Option<PathBuf>,
    },
}

/// Crates that only build for bpfel-unknown-none (with the pinned nightly):
/// left out of host builds, linted on their own.
const EBPF_CRATES: [&str; 2] = ["filter-ebpf", "filter-test-ebpf"];

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.task {
        Task::Setup => setup::ensure(&root),
        Task::Test { args } => {
            setup::ensure(&root)?;
            let mut cmd = cargo(&root);
            cmd.args(["test", "--workspace"])
                .args(EBPF_CRATES.iter().flat_map(|c| ["--exclude", c]))
                .args(&args);
            // Namespaces and mounts are cheap but the netns tests time real
            // handshakes: one at a time keeps them deterministic.
            cmd.args(["--", "--test-threads=1"]);
            run(&mut cmd)
        }
        Task::Demo => tool(&root, "filter-demo", &[]),
        Task::Rig { action } => tool(&root, "filter-rig", &[action]),
        Task::Attack { args } => tool(&root, "filter-attack", &args),
        Task::Bench { veth } => {
            setup::ensure(&root)?;
            // The controller measured at scale is the release build.
            run(cargo(&root).args(["build", "--release", "--package", "filter-ctl"]))?;
            let mut bench = cargo(&root);
            bench.args(["bench", "--package", "filter-tests", "--bench", "datapath"]);
            if veth {
                bench.args(["--", "--veth"]);
            }
            run(&mut bench)
        }
        Task::Install {
            prefix,
            destdir,
            binary,
        } => install::install(
            &root,
            &install::Install {
                prefix,
                destdir,
                binary,
            },
        ),
        Task::Lint => {
            setup::ensure(&root)?;
            run(cargo(&root).args(["fmt", "--all", "--", "--check"]))?;
            run(cargo(&root)
                .args(["clippy", "--workspace"])
                .args(EBPF_CRATES.iter().flat_map(|c| ["--exclude", c]))
                .args(["--all-targets", "--", "-D", "warnings"]))?;
            let nightly = setup::ebpf_toolchain(&root)?;
            for (krate, dir) in EBPF_CRATES.iter().zip(["filter-ebpf", "tests/ebpf"]) {
                run(Command::new("cargo")
                    .current_dir(root.join(dir))
                    .env_remove("RUSTUP_TOOLCHAIN")
                    .env_remove("RUSTC")
                    .args([
                        &format!("+{nightly}"),
                        "clippy",
                        "--package",
                        krate,
                        "--release",
                        "--target",
                        "bpfel-unknown-none",
                        "-Zbuild-std=core",
                        "--",
                        "-D",
                        "warnings",
                    ]))?;
            }
            Ok(())
        }
    }
}

/// Builds filter-ctl and the test tools, then runs one tool binary.
fn tool(root: &Path, bin: &str, args: &[String]) -> Result<()> {
    setup::ensure(root)?;
    run(cargo(root).args([
        "build",
        "--quiet",
        "--package",
        "filter-ctl",
        "--package",
        "filter-tests",
        "--bins",
    ]))?;
    run(Command::new(root.join("target/debug").join(bin)).args(args))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}
