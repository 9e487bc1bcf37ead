//! The parsers of untrusted bytes carry the clippy denials that make a panic
//! unreachable from their input (`make lint`, run by `make test`, enforces them).
//! This test fails when a parser module loses its `#![deny(...)]`, or when a new
//! DICOM or JPEG module is added without one. It also fails on an import cycle
//! between modules (house.md: no import cycles).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The lints every parser of untrusted bytes denies.
const DENIED: [&str; 5] = [
    "clippy::indexing_slicing",
    "clippy::unwrap_used",
    "clippy::expect_used",
    "clippy::panic",
    "clippy::arithmetic_side_effects",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn parser_modules() -> Vec<PathBuf> {
    let src = root().join("src");
    let mut files: Vec<PathBuf> = ["npz.rs", "bundle/gguf_check.rs", "bundle/manifest.rs", "knowledge/base.rs", "preprocess/dicom.rs",
        "text/sentencepiece.rs", "text/sentencepiece/normalizer.rs", "text/sentencepiece/proto.rs",
        "text/sentencepiece/unigram.rs", "text/siglip_tokenizer.rs", "io/pickle.rs", "io/pytorch.rs", "text/wordpiece.rs"]
        .iter()
        .map(|f| src.join(f))
        .collect();
    // Every module of the DICOM and JPEG decoders, present and future.
    for dir in ["preprocess/dicom", "preprocess/jpeg"] {
        let dir = src.join(dir);
        let mut submodules: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect();
        submodules.sort();
        assert!(!submodules.is_empty(), "no submodules found in {}", dir.display());
        files.extend(submodules);
    }
    files
}

/// The text of the file's inner `#![deny(...)]` attribute, if it has one.
fn inner_deny(text: &str) -> Option<&str> {
    let start = text.find("#![deny(")?;
    let end = start + text[start..].find(")]")?;
    Some(&text[start..end])
}

#[test]
fn every_parser_of_untrusted_bytes_denies_panicking_constructs() {
    let mut missing = Vec::new();
    for file in parser_modules() {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let deny = inner_deny(&text).unwrap_or("");
        for lint in DENIED {
            if !deny.contains(lint) {
                missing.push(format!("{}: {lint}", file.display()));
            }
        }
    }
    assert!(missing.is_empty(), "parser modules without the clippy denials:\n{}", missing.join("\n"));
}

#[test]
fn make_test_runs_clippy() {
    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    assert!(makefile.contains("test-rust: setup lint"), "make test-rust no longer depends on lint");
    assert!(makefile.contains("clippy --release --lib"), "the lint target no longer runs clippy on the library");
}

// ---------------------------------------------------------------- import cycles

/// Submodules whose cycles among themselves are known and owned elsewhere (the
/// GPU engine's context, ops and their test support refer to each other; being
/// broken on the GPU work's branch). A cycle that reaches any other module
/// fails. Remove entries once their cycle is gone; nothing may be added.
const KNOWN_CYCLIC_SUBMODULES: &[&str] = &["gpu/context", "gpu/ops", "gpu/test_support"];

/// The library's modules (paths under src/, the binary's `main.rs` and `cli/`
/// excluded: another crate) and the `crate::` / `super::` paths each file names.
fn library_modules() -> Vec<(Vec<String>, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = root().join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    let mut modules = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if parts[0] == "main" || parts[0] == "cli" {
            continue;
        }
        if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
            parts.pop();
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // Comments and doc links name paths without importing them.
        let code: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
        modules.push((parts, code));
    }
    modules
}

/// The paths of a `use` tree (or a plain path) starting at `s[i]`, each
/// prefixed with `prefix`; returns where it ends. `{a, b::{c, self}}` and `*`
/// expand; `super` pops, `self` stays.
fn use_paths(s: &[u8], mut i: usize, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix.to_vec();
    loop {
        while s.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        match s.get(i) {
            Some(b'{') => {
                i += 1;
                loop {
                    while s.get(i).is_some_and(|c| c.is_ascii_whitespace() || *c == b',') {
                        i += 1;
                    }
                    if matches!(s.get(i), None | Some(b'}')) {
                        return i + 1;
                    }
                    let before = i;
                    i = use_paths(s, i, &path, out);
                    if i == before {
                        return i + 1;
                    }
                }
            }
            Some(b'*') => {
                out.push(path);
                return i + 1;
            }
            _ => {}
        }
        let start = i;
        while s.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
            i += 1;
        }
        let ident = std::str::from_utf8(&s[start..i]).unwrap();
        match ident {
            "" => {
                out.push(path);
                return i;
            }
            "super" => {
                path.pop();
            }
            "self" => {}
            _ => path.push(ident.to_string()),
        }
        if s[i..].starts_with(b"::") {
            i += 2;
            continue;
        }
        out.push(path);
        // `… as alias`: the alias is not a path.
        let rest = &s[i..];
        let spaces = rest.iter().take_while(|c| c.is_ascii_whitespace()).count();
        if spaces > 0 && rest[spaces..].starts_with(b"as") && rest.get(spaces + 2).is_some_and(u8::is_ascii_whitespace) {
            i += spaces + 2;
            while s.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
                i += 1;
            }
            while s.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
                i += 1;
            }
        }
        return i;
    }
}

/// Edges between modules cut to their first `depth` names: `a` names `b`,
/// neither inside the other.
fn module_edges(depth: usize) -> BTreeMap<String, BTreeSet<String>> {
    let modules = library_modules();
    let known: BTreeSet<Vec<String>> = modules.iter().map(|(m, _)| m.clone()).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, code) in &modules {
        if module.is_empty() {
            continue;
        }
        let s = code.as_bytes();
        for keyword in ["crate::", "super::"] {
            for (at, _) in code.match_indices(keyword) {
                if at > 0 && (s[at - 1].is_ascii_alphanumeric() || s[at - 1] == b'_' || s[at - 1] == b':') {
                    continue;
                }
                let base: Vec<String> = if keyword == "crate::" { Vec::new() } else { module[..module.len() - 1].to_vec() };
                let mut paths = Vec::new();
                use_paths(s, at + keyword.len(), &base, &mut paths);
                for path in paths {
                    let Some(target) = (1..=path.len()).rev().map(|k| path[..k].to_vec()).find(|p| known.contains(p)) else {
                        continue;
                    };
                    let (a, b) = (&module[..module.len().min(depth)], &target[..target.len().min(depth)]);
                    if a.starts_with(b) || b.starts_with(a) {
                        continue;
                    }
                    edges.entry(a.join("/")).or_default().insert(b.join("/"));
                }
            }
        }
    }
    edges
}

/// The strongly connected components of more than one module (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(st: &mut State<'a>, v: &'a str) {
        let n = st.index.len();
        st.index.insert(v, n);
        st.low.insert(v, n);
        st.stack.push(v);
        let edges = st.edges;
        for w in edges.get(v).into_iter().flatten() {
            if !st.index.contains_key(w.as_str()) {
                visit(st, w);
                let lw = st.low[w.as_str()];
                let lv = st.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if st.stack.contains(&w.as_str()) {
                let iw = st.index[w.as_str()];
                let lv = st.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if st.low[v] == st.index[v] {
            let mut component = Vec::new();
            while let Some(w) = st.stack.pop() {
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                st.out.push(component);
            }
        }
    }
    let mut st = State { edges, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), out: Vec::new() };
    for v in edges.keys() {
        if !st.index.contains_key(v.as_str()) {
            visit(&mut st, v);
        }
    }
    st.out
}

fn describe(edges: &BTreeMap<String, BTreeSet<String>>, component: &[String]) -> String {
    let inside: Vec<String> = component
        .iter()
        .flat_map(|a| edges.get(a).into_iter().flatten().filter(|b| component.contains(b)).map(move |b| format!("{a} -> {b}")))
        .collect();
    inside.join(", ")
}

/// house.md: no import cycles. The top-level modules form a DAG (`pipeline`
/// depends on `engine`, never the reverse; `model_dir` and `bundle` both read
/// folders through `model_files`; `testing` sits above `models`).
#[test]
fn top_level_modules_import_no_cycle() {
    let edges = module_edges(1);
    for (from, to) in [("pipeline", "engine"), ("model_dir", "bundle"), ("bundle", "model_files")] {
        assert!(edges.get(from).is_some_and(|t| t.contains(to)), "the edge scan lost {from} -> {to} (a scanner bug)");
    }
    let found = cycles(&edges);
    let text: Vec<String> = found.iter().map(|c| describe(&edges, c)).collect();
    assert!(found.is_empty(), "import cycles between top-level modules:\n{}", text.join("\n"));
}

/// The same one level down (`models/clip` vs `models/siglip`, `gpu/context`
/// vs `gpu/ops`), but for [`KNOWN_CYCLIC_SUBMODULES`].
#[test]
fn submodules_import_no_new_cycle() {
    let edges = module_edges(2);
    let new: Vec<String> = cycles(&edges)
        .into_iter()
        .filter(|c| !c.iter().all(|m| KNOWN_CYCLIC_SUBMODULES.contains(&m.as_str())))
        .map(|c| describe(&edges, &c))
        .collect();
    assert!(new.is_empty(), "import cycles between submodules:\n{}", new.join("\n"));
}

/// The scanner finds a cycle where there is one (so the tests above can fail).
#[test]
fn the_cycle_scan_finds_a_planted_cycle() {
    let mut paths = Vec::new();
    let code = b"{a::{b, c::*}, super::d, self::e as f}";
    let base = vec!["x".to_string(), "y".to_string()];
    use_paths(code, 0, &base, &mut paths);
    let shown: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(shown, ["x::y::a::b", "x::y::a::c", "x::d", "x::y::e"]);
    let mut edges = module_edges(1);
    edges.entry("engine".into()).or_default().insert("pipeline".into());
    let found = cycles(&edges);
    assert!(found.iter().any(|c| c.contains(&"engine".to_string()) && c.contains(&"pipeline".to_string())), "{found:?}");
}
