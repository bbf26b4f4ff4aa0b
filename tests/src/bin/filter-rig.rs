//! `cargo xtask rig up|down`: the namespace rig with fixed names
//! (filt-att, filt-cli, filt-srv), left in place between the two.

fn main() {
    let verb = std::env::args().nth(1).unwrap_or_default();
    filter_tests::require_root();
    match verb.as_str() {
        "up" => {
            filter_tests::rig::down(PREFIX);
            filter_tests::rig::Rig::new(PREFIX).keep();
            println!("rig up: namespaces {PREFIX}-att (10.77.1.2), {PREFIX}-cli (10.77.2.2), {PREFIX}-srv (10.77.1.1, 10.77.2.1)");
            println!("e.g. ip netns exec {PREFIX}-srv filter-ctl attach srv-att srv-cli --pin-dir /run/filter-rig/bpf");
        }
        "down" => {
            filter_tests::rig::down(PREFIX);
            println!("rig down");
        }
        _ => {
            eprintln!("usage: filter-rig up|down");
            std::process::exit(2);
        }
    }
}

const PREFIX: &str = "filt";
