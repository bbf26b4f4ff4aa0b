//! Compiles the kfunc shim (`src/handover/kfunc.c`) to LLVM bitcode and
//! links it into the `handover` program only: the filter itself must load
//! on kernels without the kfunc.

use std::{env, path::PathBuf, process::Command};

/// Clang releases tried in order (any one whose bitcode the bpf-linker's
/// LLVM can read: older is fine, newer is not).
const CLANGS: [&str; 3] = ["clang-22", "clang-19", "clang"];

fn main() {
    let src = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("src/handover/kfunc.c");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-env-changed=FILTER_CLANG");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("kfunc.bc");
    let candidates: Vec<String> = match env::var("FILTER_CLANG") {
        Ok(c) => vec![c],
        Err(_) => CLANGS.iter().map(|s| s.to_string()).collect(),
    };
    let mut tried = Vec::new();
    for clang in &candidates {
        let status = Command::new(clang)
            .args(["-target", "bpfel", "-g", "-O2", "-emit-llvm", "-c"])
            .arg(&src)
            .arg("-o")
            .arg(&out)
            .status();
        match status {
            Ok(s) if s.success() => {
                println!("cargo:rustc-link-arg-bin=handover={}", out.display());
                return;
            }
            Ok(s) => tried.push(format!("{clang}: {s}")),
            Err(e) => tried.push(format!("{clang}: {e}")),
        }
    }
    panic!(
        "no clang compiled {} ({}); `cargo xtask setup` installs clang-19",
        src.display(),
        tried.join("; ")
    );
}
