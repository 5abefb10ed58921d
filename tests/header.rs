//! The checked-in header must equal what cbindgen generates from src/ffi/ now, and must
//! compile as strict C99 and as C++17.

mod common;

use std::process::Command;

use common::*;

fn generate() -> String {
    let config = cbindgen::Config::from_file(repo().join("cbindgen.toml")).unwrap();
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(repo())
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn header_is_fresh() {
    let fresh = generate();
    let checked_in = std::fs::read_to_string(repo().join("include/vtower.h")).unwrap();
    assert!(
        fresh == checked_in,
        "include/vtower.h is stale: regenerate it with \
         `cargo test --test header -- --ignored regenerate_header` and commit it"
    );
}

/// Writes a fresh include/vtower.h (run on purpose, not in the normal test run).
#[test]
#[ignore]
fn regenerate_header() {
    std::fs::write(repo().join("include/vtower.h"), generate()).unwrap();
}

fn syntax_check(compiler: &str, std: &str, lang: &str) {
    let tmp = temp_dir(&format!("header-{lang}"));
    let src = tmp.join(if lang == "c" { "t.c" } else { "t.cpp" });
    std::fs::write(
        &src,
        "#include \"vtower.h\"\nint main(void) { vt_load_params p = vt_load_params_default(); \
         return (int)p.struct_size == 0; }\n",
    )
    .unwrap();
    let status = Command::new(compiler)
        .arg(format!("-std={std}"))
        .args(["-Wall", "-Wextra", "-Wpedantic", "-Werror", "-fsyntax-only"])
        .arg(format!("-I{}", repo().join("include").display()))
        .arg(&src)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "vtower.h does not compile with {compiler} -std={std}"
    );
}

#[test]
fn header_compiles_as_c99() {
    syntax_check("cc", "c99", "c");
}

#[test]
fn header_compiles_as_cxx17() {
    syntax_check("c++", "c++17", "cxx");
}

#[test]
fn header_version_macros_match_cargo_toml() {
    let h = std::fs::read_to_string(repo().join("include/vtower.h")).unwrap();
    for (name, value) in [
        ("VT_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("VT_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("VT_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        assert!(
            h.contains(&format!("#define {name} {value}")),
            "{name} != {value}"
        );
    }
}

#[test]
fn header_exports_only_vt_names() {
    let h = std::fs::read_to_string(repo().join("include/vtower.h")).unwrap();
    for line in h.lines() {
        let t = line.trim_start();
        if t.starts_with('*') || t.starts_with("/*") || t.starts_with("//") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("#define ") {
            let name = rest.split_whitespace().next().unwrap();
            assert!(name.starts_with("VT"), "stray macro in vtower.h: {line}");
        }
        for kw in ["enum ", "struct "] {
            if let Some(pos) = line.find(kw) {
                let name = line[pos + kw.len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("");
                assert!(
                    name.is_empty() || name.starts_with("vt_"),
                    "stray type: {line}"
                );
            }
        }
    }
}
