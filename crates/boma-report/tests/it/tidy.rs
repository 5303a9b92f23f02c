//! The crate's house rules as tests: every file says what it is for, and the library stays pure.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

fn crate_files(sub: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join(sub), &mut found);
    assert!(!found.is_empty(), "no .rs file under {sub}");
    found
}

#[test]
fn every_file_opens_with_what_it_is_for() {
    for path in crate_files("src").into_iter().chain(crate_files("tests")) {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("//! "),
            "{} must open with a `//!` line saying what it is for",
            path.display()
        );
    }
}

/// Values in, text out: the renderers read no clock, environment or file and start no process
/// (printing is denied by `clippy::print_stdout`/`print_stderr` in lib.rs).
#[test]
fn the_library_is_pure() {
    let forbidden = [
        "SystemTime::now",
        "Instant::now",
        "std::env",
        "std::fs",
        "std::process",
        "std::net",
        "io::stdout",
        "io::stderr",
    ];
    for path in crate_files("src") {
        let text = std::fs::read_to_string(&path).unwrap();
        for word in forbidden {
            assert!(
                !text.contains(word),
                "{} uses `{word}`: the report crate takes times, paths and text from its caller",
                path.display()
            );
        }
    }
}
