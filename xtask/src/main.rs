//! Project tasks. Orchestration only: the eBPF object is built by
//! `filter-ctl/build.rs`, the demo and benchmark live in `tests/`.
//!
//!   cargo xtask setup   install prerequisites (idempotent, fast when present)
//!   cargo xtask test    every test: unit, kernel (BPF_PROG_TEST_RUN), netns
//!   cargo xtask demo    the data-path demo in network namespaces
//!   cargo xtask bench   ns/packet per verdict beside a bare XDP_DROP
//!   cargo xtask lint    rustfmt and clippy (split for the eBPF crate)

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
    /// Run the demo: namespaces, the filter attached, an attacker blocked
    /// while a legitimate client keeps connecting.
    Demo,
    /// Benchmark the data path through BPF_PROG_TEST_RUN.
    Bench,
    /// Check formatting and run clippy with warnings denied.
    Lint,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.task {
        Task::Setup => setup::ensure(&root),
        Task::Test { args } => {
            setup::ensure(&root)?;
            let mut cmd = cargo(&root);
            cmd.args(["test", "--workspace", "--exclude", "filter-ebpf"])
                .args(&args);
            // Namespaces and mounts are cheap but the netns tests time real
            // handshakes: one at a time keeps them deterministic.
            cmd.args(["--", "--test-threads=1"]);
            run(&mut cmd)
        }
        Task::Demo => {
            setup::ensure(&root)?;
            run(cargo(&root).args(["build", "--quiet", "--package", "filter-ctl"]))?;
            let ctl = root.join("target/debug/filter-ctl");
            run(cargo(&root)
                .args([
                    "run",
                    "--quiet",
                    "--package",
                    "filter-tests",
                    "--bin",
                    "filter-demo",
                    "--",
                ])
                .arg(ctl))
        }
        Task::Bench => {
            setup::ensure(&root)?;
            run(cargo(&root).args(["bench", "--package", "filter-tests", "--bench", "datapath"]))
        }
        Task::Lint => {
            setup::ensure(&root)?;
            run(cargo(&root).args(["fmt", "--all", "--", "--check"]))?;
            run(cargo(&root).args([
                "clippy",
                "--workspace",
                "--exclude",
                "filter-ebpf",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))?;
            let nightly = setup::ebpf_toolchain(&root)?;
            run(Command::new("cargo")
                .current_dir(root.join("filter-ebpf"))
                .env_remove("RUSTUP_TOOLCHAIN")
                .env_remove("RUSTC")
                .args([
                    &format!("+{nightly}"),
                    "clippy",
                    "--package",
                    "filter-ebpf",
                    "--release",
                    "--target",
                    "bpfel-unknown-none",
                    "-Zbuild-std=core",
                    "--",
                    "-D",
                    "warnings",
                ]))
        }
    }
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
