//! Builds the test-only eBPF programs (`tests/ebpf`: the rig's flood
//! generator and the benchmark's bare XDP_DROP) with the nightly pinned in
//! `filter-ebpf/rust-toolchain.toml`, the same one the filter is built with.

use std::{fs, path::Path};

use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let toolchain_file = here.join("../filter-ebpf/rust-toolchain.toml");
    println!("cargo:rerun-if-changed={}", toolchain_file.display());
    let text = fs::read_to_string(&toolchain_file)
        .with_context(|| format!("reading {}", toolchain_file.display()))?;
    let channel = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel"))
        .and_then(|rest| rest.split('"').nth(1))
        .ok_or_else(|| anyhow!("no channel in {}", toolchain_file.display()))?
        .to_owned();
    let root = here.join("ebpf");
    let root_dir = root
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", root.display()))?;
    let package = Package {
        name: "filter-test-ebpf",
        root_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::Custom(&channel))
}
