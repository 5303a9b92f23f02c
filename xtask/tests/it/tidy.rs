//! House rules as tests, so `cargo test` is the one gate (rust-analyzer's `tidy.rs` idea):
//! every Ansible tag is known (check-tags), and every Rust file opens with a `//!` line saying
//! what it is for.

use crate::support::*;

use camino::{Utf8Path, Utf8PathBuf};

/// Every `.rs` file under `dir`, skipping build output.
fn rust_files(dir: &Utf8Path, found: &mut Vec<Utf8PathBuf>) {
    let Ok(entries) = dir.read_dir_utf8() else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path().to_owned();
        let name = entry.file_name();
        if name == "target" || name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, found);
        } else if name.ends_with(".rs") {
            found.push(path);
        }
    }
}

#[test]
fn every_rust_file_opens_with_a_module_doc_line() {
    let repo = repo();
    let mut files = Vec::new();
    rust_files(&repo.join("crates"), &mut files);
    rust_files(&repo.join("xtask"), &mut files);
    assert!(files.len() > 50, "found only {} files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !text.starts_with("//!")
        })
        .map(|f| f.strip_prefix(&repo).unwrap_or(f).to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` line saying what they are for:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn every_ansible_tag_is_a_role_or_a_listed_concern() {
    let report = boma_tags::check_repo(&repo()).expect("the repository's tags can be read");
    let findings: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
    assert!(
        findings.is_empty(),
        "unknown tags (add them to tests/tags.yml or fix them):\n  {}",
        findings.join("\n  ")
    );
}
