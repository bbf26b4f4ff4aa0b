//! The floors of `filter-ctl/src` import only downward (or within their own
//! floor), so no import circle can come back:
//!
//! `model`, `error` → `policy` → `kernel` → `detect` → `service` → `api` → `cli`
//!
//! This reads every source file, finds each `crate::` path (including the
//! names inside `use crate::{...}` groups) and fails on any that reaches a
//! higher floor, or a module this table does not know (a new top-level
//! module must be given its floor here).

use std::path::{Path, PathBuf};

/// Top-level modules and crate-root items, with their floor.
const FLOORS: &[(&str, u8)] = &[
    ("model", 0),
    ("error", 0),
    ("FILTER_OBJECT", 0),
    ("HANDOVER_OBJECT", 0),
    ("policy", 1),
    ("kernel", 2),
    ("detect", 3),
    ("service", 4),
    ("api", 5),
    ("cli", 6),
];

fn floor(name: &str) -> Option<u8> {
    FLOORS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The first-level names a `crate::` path at `rest` reaches: `x` for
/// `crate::x::...`, each item's first name for `crate::{a::b, c}`.
fn reached(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    if !rest.starts_with('{') {
        return vec![ident(rest)];
    }
    let mut depth = 0;
    let mut items = vec![String::new()];
    for c in rest.chars() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => {
                items.push(String::new());
                continue;
            }
            _ => {}
        }
        items.last_mut().unwrap().push(c);
    }
    items
        .iter()
        .map(|i| ident(i))
        .filter(|i| !i.is_empty())
        .collect()
}

/// Every upward or unknown import in the crate's sources.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let mut bad = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let top = rel.iter().next().unwrap().to_str().unwrap();
        let top = top.strip_suffix(".rs").unwrap_or(top);
        if top == "lib" || top == "main" {
            continue; // the crate root declares the floors
        }
        let own =
            floor(top).unwrap_or_else(|| panic!("{}: module {top} has no floor", rel.display()));
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("crate::") {
            let line = text[..at].lines().count().max(1);
            for name in reached(&text[at + "crate::".len()..]) {
                match floor(&name) {
                    Some(f) if f <= own => {}
                    Some(f) => bad.push(format!(
                        "{}:{line}: {top} (floor {own}) imports {name} (floor {f})",
                        rel.display()
                    )),
                    None => bad.push(format!(
                        "{}:{line}: crate::{name} is not a known floor",
                        rel.display()
                    )),
                }
            }
        }
    }
    bad
}

#[test]
fn floors_import_only_downward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = violations(&src);
    assert!(bad.is_empty(), "upward imports:\n{}", bad.join("\n"));
}

#[test]
fn the_check_sees_grouped_and_plain_paths() {
    assert_eq!(reached("kernel::maps::Maps;"), ["kernel"]);
    assert_eq!(
        reached("{\n    model::addr::{a, b},\n    service::ops::Request,\n};"),
        ["model", "service"]
    );
    // An upward import in a scratch tree is reported.
    let dir = std::env::temp_dir().join(format!("layers-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("kernel")).unwrap();
    std::fs::write(
        dir.join("kernel/x.rs"),
        "use crate::{model::a, service::b};\n",
    )
    .unwrap();
    std::fs::write(dir.join("policy.rs"), "use crate::kernel::y;\n").unwrap();
    let bad = violations(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(
        bad[0].contains("imports service (floor 4)")
            || bad[1].contains("imports service (floor 4)")
    );
    assert!(bad
        .iter()
        .any(|b| b.contains("policy (floor 1) imports kernel (floor 2)")));
}
