//! The layout's rule, checked: within each crate, no module imports one
//! that imports it back (directly or through others).
//!
//! Every source file of the workspace's crates is a module. A module
//! imports another when its code (outside its `#[cfg(test)]` module) names
//! a path into it: `use crate::a::b`, `use super::c`, grouped `use` trees,
//! or a path written inline (`crate::a::f(..)`). A module declaring its
//! children (`mod x;`) does not import them. The strongly connected
//! components of that graph must all be single modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates whose modules are checked (their `src/` folders).
const CRATES: &[&str] = &[
    "ipvs-netlink",
    "ipvs-plan",
    "ipvsadm-compat",
    "ipvs-k8s",
    "ipvsadm-rs",
    "fake-apiserver",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file: `src/lib.rs` is `[]`,
/// `src/a/mod.rs` and `src/a.rs` are `["a"]`, `src/a/b.rs` is `["a", "b"]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts
}

/// The code of a file without comments, string literals and its test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'r' && b.get(i + 1) == Some(&b'#') && b.get(i + 2) == Some(&b'"') {
            // A raw string: to its closing `"#`.
            i += 3;
            while i + 1 < b.len() && !(b[i] == b'"' && b[i + 1] == b'#') {
                i += 1;
            }
            i += 2;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // A character literal such as '"'.
            i += 3;
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            // An escaped character literal such as '\n'.
            i += 2;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    match tree.find('{') {
        None => {
            for part in tree.split(',') {
                let part = part.split(" as ").next().unwrap_or("").trim();
                if !part.is_empty() {
                    out.push(format!("{prefix}{part}"));
                }
            }
        }
        Some(open) => {
            let head = &tree[..open];
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            // Split the inner list on commas at depth 0.
            let (mut depth, mut start) = (0, 0);
            let bytes = inner.as_bytes();
            for (k, c) in bytes.iter().enumerate() {
                match c {
                    b'{' => depth += 1,
                    b'}' => depth -= 1,
                    b',' if depth == 0 => {
                        expand(&format!("{prefix}{head}"), &inner[start..k], out);
                        start = k + 1;
                    }
                    _ => {}
                }
            }
            expand(&format!("{prefix}{head}"), &inner[start..], out);
        }
    }
}

/// Every path into the crate that `code` names, as written.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    // `use` statements, possibly grouped over several lines.
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        rest = &rest[i + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        let tree: String = rest[..end].split_whitespace().collect::<Vec<_>>().join(" ");
        if tree.starts_with("crate::") || tree.starts_with("super::") {
            expand("", &tree, &mut out);
        }
    }
    // Paths written inline.
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            let path: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(path.trim_end_matches(':').to_owned());
            from = at + start.len();
        }
    }
    out
}

/// The module a path names: the longest prefix that is a module.
fn resolve(
    here: &[String],
    path: &str,
    modules: &BTreeSet<Vec<String>>,
    is_dir_module: bool,
) -> Option<Vec<String>> {
    let mut parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    let mut base: Vec<String> = match parts.first() {
        Some(&"crate") => {
            parts.remove(0);
            Vec::new()
        }
        Some(&"super") => {
            let mut b = here.to_vec();
            while parts.first() == Some(&"super") {
                parts.remove(0);
                // In a.rs or a/mod.rs, `super` is a's parent; in
                // lib.rs there is none.
                b.pop()?;
            }
            let _ = is_dir_module;
            b
        }
        _ => return None,
    };
    let mut best = base.clone();
    for p in parts {
        if p == "self" || p == "*" {
            break;
        }
        base.push(p.to_owned());
        if modules.contains(&base) {
            best = base.clone();
        } else {
            break;
        }
    }
    Some(best)
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = workspace();
    let mut cycles = Vec::new();
    for krate in CRATES {
        let src = root.join(krate).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for file in &files {
            let here = module_of(&src, file);
            let is_dir = file.file_name().is_some_and(|n| n == "mod.rs");
            let text = std::fs::read_to_string(file).unwrap();
            for path in paths(&code(&text)) {
                if let Some(to) = resolve(&here, &path, &modules, is_dir) {
                    if to != here {
                        edges.entry(here.clone()).or_default().insert(to);
                    }
                }
            }
        }
        // Cycles: a module that reaches itself.
        for start in &modules {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<Vec<String>> = edges
                .get(start)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            while let Some(m) = stack.pop() {
                if &m == start {
                    cycles.push(format!("{krate}: {} is in a cycle", start.join("::")));
                    break;
                }
                if seen.insert(m.clone()) {
                    if let Some(next) = edges.get(&m) {
                        stack.extend(next.iter().cloned());
                    }
                }
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_checker_sees_a_cycle_and_grouped_uses() {
    let mut out = Vec::new();
    expand("", "crate::{cli::{self, Cmd}, io::Out as O}", &mut out);
    assert_eq!(
        out,
        ["crate::cli::self", "crate::cli::Cmd", "crate::io::Out"]
    );
    let modules: BTreeSet<Vec<String>> = [vec![], vec!["a".into()], vec!["a".into(), "b".into()]]
        .into_iter()
        .collect();
    let b = vec!["a".to_owned(), "b".to_owned()];
    assert_eq!(
        resolve(&b, "super::run", &modules, false),
        Some(vec!["a".to_owned()])
    );
    assert_eq!(
        resolve(&[], "crate::a::b::f", &modules, false),
        Some(b.clone())
    );
    let found = paths(&code(
        "use crate::a;\n// use crate::x;\nfn f() { crate::a::b::g(\"crate::y\") }\n#[cfg(test)]\nmod tests { use crate::z; }",
    ));
    assert_eq!(found, ["crate::a", "crate::a", "crate::a::b::g"]);
}
