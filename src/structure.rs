//! Checks of the source tree's shape that CONTRIBUTING.md promises (test-only; reads `src/`
//! as text):
//!
//! - the modules of `src/` import each other without a cycle: every `crate::` path of a
//!   module's non-test code (in `use` lines, groups and inline paths alike) is an edge to the
//!   deepest module it names;
//! - no function of `src/models/` or `src/preprocess/` outside tests runs over 80 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest function, in lines from `fn` to its closing brace, in `src/models` and
/// `src/preprocess`.
const MAX_FN_LINES: usize = 80;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
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

/// `src/preprocess/qwen2_vl.rs` -> `preprocess::qwen2_vl`, `src/models/mod.rs` -> `models`.
fn module_name(path: &Path) -> String {
    let rel = path.strip_prefix(src_dir()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The text with comments, string literals and character literals blanked to spaces
/// (newlines kept), so that braces and paths are those of the code.
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(k).copied();
        if c[i] == '/' && at(i + 1) == Some('/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && at(i + 1) == Some('*') {
            let mut depth = 0;
            loop {
                if c[i] == '/' && at(i + 1) == Some('*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == Some('/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (at(i + 1) == Some('"') || at(i + 1) == Some('#'))
            && !(i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_'))
        {
            // A raw string r"..." or r#"..."#; `r#ident` is not one.
            let mut hashes = 0;
            while at(i + 1 + hashes) == Some('#') {
                hashes += 1;
            }
            if at(i + 1 + hashes) != Some('"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            let close: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            out.push('r');
            i += 2 + hashes;
            while i < c.len() && !c[i..].starts_with(&close) {
                out.push(blank(c[i]));
                i += 1;
            }
            i += close.len();
            out.push_str("  ");
        } else if c[i] == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                let skip = if c[i] == '\\' { 2 } else { 1 };
                for k in 0..skip.min(c.len() - i) {
                    out.push(blank(c[i + k]));
                }
                i += skip;
            }
            out.push('"');
            i += 1;
        } else if c[i] == '\'' && (at(i + 1) == Some('\\') || at(i + 2) == Some('\'')) {
            // A character literal ('x', '\n', '\u{..}'); a lifetime has no closing quote.
            let from = if at(i + 1) == Some('\\') {
                i + 3
            } else {
                i + 2
            };
            let end = (from..c.len()).find(|&k| c[k] == '\'').unwrap();
            out.push_str("''");
            i = end + 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// A module's code without its `#[cfg(test)] mod` block (which sits at the end).
fn non_test_code(text: &str) -> String {
    let code = code_only(text);
    match code.find("#[cfg(test)]\nmod ") {
        Some(at) => code[..at].to_string(),
        None => code,
    }
}

/// Every module of `src/` (but the crate root and this file) with its non-test code.
fn modules() -> BTreeMap<String, String> {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    files
        .iter()
        .map(|f| (module_name(f), f))
        .filter(|(m, _)| m != "lib" && m != "structure")
        .map(|(m, f)| (m, non_test_code(&std::fs::read_to_string(f).unwrap())))
        .collect()
}

fn is_path_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || ch == '_' || ch == ':'
}

/// The modules that `code` (of module `me`) names through `crate::` paths.
fn imports(me: &str, code: &str, all: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut paths = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let tail = &code[at + "crate::".len()..];
        let len = tail.find(|ch| !is_path_char(ch)).unwrap_or(tail.len());
        let base = tail[..len].trim_end_matches(':');
        paths.push(base.to_string());
        if tail[len..].starts_with('{') && tail[..len].ends_with("::") {
            // `use crate::a::{b, c::D, e::{F, G}}`: each item's first segment under `a`.
            let group = &tail[len + 1..tail.find(';').unwrap_or(tail.len())];
            for item in group.split([',', '{', '}']) {
                let first = item.trim().split("::").next().unwrap_or("");
                if !first.is_empty() {
                    paths.push(format!("{base}::{first}"));
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    for path in paths {
        let parts: Vec<&str> = path.split("::").collect();
        let named = (1..=parts.len())
            .rev()
            .map(|k| parts[..k].join("::"))
            .find(|m| all.contains_key(m));
        if let Some(m) = named {
            let related =
                m == me || me.starts_with(&format!("{m}::")) || m.starts_with(&format!("{me}::"));
            if !related {
                out.insert(m);
            }
        }
    }
    out
}

/// A cycle of `graph` as the list of its modules, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        v: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        mark: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        mark.insert(v.to_string(), Mark::Open);
        stack.push(v.to_string());
        for w in &graph[v] {
            match mark[w.as_str()] {
                Mark::Open => {
                    let from = stack.iter().position(|s| s == w).unwrap();
                    return Some(stack[from..].to_vec());
                }
                Mark::New => {
                    if let Some(c) = visit(w, graph, mark, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        mark.insert(v.to_string(), Mark::Done);
        None
    }
    let mut mark: BTreeMap<String, Mark> = graph.keys().map(|k| (k.clone(), Mark::New)).collect();
    for v in graph.keys() {
        if mark[v.as_str()] == Mark::New {
            if let Some(c) = visit(v, graph, &mut mark, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn import_graph(all: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    all.iter()
        .map(|(m, code)| (m.clone(), imports(m, code, all)))
        .collect()
}

/// `(name, first line, length in lines)` of each function in `code` with a body, outer
/// functions only.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let mut head = lines[i].trim_start();
        for prefix in [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "const ",
            "unsafe ",
            "async ",
            "extern \" \" ",
        ] {
            head = head.strip_prefix(prefix).unwrap_or(head);
        }
        let Some(sig) = head.strip_prefix("fn ") else {
            i += 1;
            continue;
        };
        let name: String = sig.chars().take_while(|c| is_path_char(*c)).collect();
        let (mut depth, mut opened, mut j) = (0i64, false, i);
        while j < lines.len() {
            for ch in lines[j].chars() {
                match ch {
                    '{' => (depth, opened) = (depth + 1, true),
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if (opened && depth == 0) || (!opened && lines[j].trim_end().ends_with(';')) {
                break;
            }
            j += 1;
        }
        if opened {
            out.push((name, i + 1, j - i + 1));
        }
        i = j + 1;
    }
    out
}

#[test]
fn src_modules_import_without_a_cycle() {
    let all = modules();
    assert!(all.len() > 50, "read {} modules of src/", all.len());
    let graph = import_graph(&all);
    // The checker sees the edges it must: a family processor on its shared processor.
    assert!(graph["preprocess::glm4v"].contains("preprocess::qwen2_vl"));
    assert!(graph["models::registry"].contains("models::siglip"));
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "the modules of src/ import each other in a cycle: {} -> {} (CONTRIBUTING.md, \
             Layers: move what two files share below both)",
            cycle.join(" -> "),
            cycle[0]
        );
    }
}

#[test]
fn no_function_over_80_lines_in_models_and_preprocess() {
    let mut long = Vec::new();
    for dir in ["models", "preprocess"] {
        let mut files = Vec::new();
        rust_files(&src_dir().join(dir), &mut files);
        for f in files {
            let code = non_test_code(&std::fs::read_to_string(&f).unwrap());
            for (name, line, len) in functions(&code) {
                if len > MAX_FN_LINES {
                    long.push(format!("{}:{line} {name} ({len} lines)", f.display()));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines (split them into named steps): {long:#?}"
    );
}

#[test]
fn the_checkers_see_what_they_must() {
    // Comments, strings and character literals do not count as code.
    let code = code_only(
        "let a = \"crate::x {\\\"\"; // crate::y {\nlet b = '{'; let q = '\\''; /* crate::z */ 'a",
    );
    assert!(!code.contains("crate::") && !code.contains('{'), "{code}");
    assert!(code.ends_with("'a"), "a lifetime stays: {code}");
    let raw = code_only("let s = r#\"crate::q \"{\"#; fn f() {}");
    assert_eq!(raw.matches('{').count(), 1, "{raw}");

    let all: BTreeMap<String, String> = ["a", "b", "c", "c::d", "e"]
        .iter()
        .map(|m| (m.to_string(), String::new()))
        .collect();
    let found = imports(
        "a",
        "use crate::c::{d::{X, Y}, Z};\nfn f() { crate::e::g(); crate::a::h(); }",
        &all,
    );
    // `Z` is an item of `c`; `crate::a` is the module itself.
    assert_eq!(
        found,
        BTreeSet::from(["c".into(), "c::d".into(), "e".into()])
    );

    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(find_cycle(&graph(&[("a", "b"), ("b", "c")])), None);
    let cycle = find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "b")])).unwrap();
    assert_eq!(cycle, ["b", "c"]);

    let body = |n: usize| "    x();\n".repeat(n);
    let code = format!(
        "pub fn short() {{\n{}}}\nfn declared();\npub(crate) fn long() {{\n{}}}\n",
        body(3),
        body(90)
    );
    assert_eq!(
        functions(&code),
        [("short".into(), 1, 5), ("long".into(), 7, 92)]
    );
}
