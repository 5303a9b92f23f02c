//! House rules as tests, so `cargo test` is the one gate (rust-analyzer's `tidy.rs` idea):
//! every Ansible tag is known (check-tags), every Rust file opens with a `//!` line saying
//! what it is for, each crate's integration tests are one test binary, and every snapshot names
//! its existing source.

use crate::support::*;

use camino::{Utf8Path, Utf8PathBuf};

/// Every file under `dir` whose name ends with `suffix`, skipping build output.
fn files_ending(dir: &Utf8Path, suffix: &str, found: &mut Vec<Utf8PathBuf>) {
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
            files_ending(&path, suffix, found);
        } else if name.ends_with(suffix) {
            found.push(path);
        }
    }
}

#[test]
fn every_rust_file_opens_with_a_module_doc_line() {
    let repo = repo();
    let mut files = Vec::new();
    files_ending(&repo.join("crates"), ".rs", &mut files);
    files_ending(&repo.join("xtask"), ".rs", &mut files);
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

/// Every crate's integration tests are one test binary, `tests/it/main.rs` with a module per
/// subject: each other `tests/*.rs` is a binary of its own, one more link in every `cargo test`
/// on a 2-core machine. One may stay only when it needs its own process, and says so at its top.
#[test]
fn each_crates_integration_tests_are_one_binary() {
    let repo = repo();
    let mut test_dirs: Vec<Utf8PathBuf> = repo
        .join("crates")
        .read_dir_utf8()
        .unwrap()
        .map(|e| e.unwrap().path().join("tests"))
        .collect();
    test_dirs.push(repo.join("xtask/tests"));
    let mut found = 0;
    let mut wrong = Vec::new();
    for tests in test_dirs.iter().filter(|d| d.is_dir()) {
        let mut files = Vec::new();
        files_ending(tests, ".rs", &mut files);
        for file in &files {
            let inside = file.strip_prefix(tests).unwrap();
            if inside.starts_with("it") || inside.starts_with("fixtures") {
                continue;
            }
            let own_process = inside.parent() == Some(Utf8Path::new(""))
                && std::fs::read_to_string(file)
                    .unwrap()
                    .contains("needs its own process");
            if !own_process {
                wrong.push(file.strip_prefix(&repo).unwrap().to_string());
            }
        }
        if files
            .iter()
            .any(|f| f.strip_prefix(tests).unwrap().starts_with("it"))
        {
            found += 1;
            if !tests.join("it/main.rs").is_file() {
                wrong.push(format!(
                    "{} (no it/main.rs)",
                    tests.strip_prefix(&repo).unwrap()
                ));
            }
        }
    }
    assert!(found > 10, "only {found} crates with tests/it/");
    assert!(
        wrong.is_empty(),
        "move these into their crate's tests/it/ (a `mod` in tests/it/main.rs; a top-level \
         file may stay only when it needs its own process and says so at its top):\n  {}",
        wrong.join("\n  ")
    );
}

/// Every insta snapshot's header names the test file that asserts it (`source:`), so a moved
/// or renamed test cannot leave a snapshot pointing at a file that is gone (insta compares the
/// values only). Whether a test still asserts it is `cargo xtask lint`'s check.
#[test]
fn every_snapshot_names_its_existing_source() {
    let repo = repo();
    let mut snapshots = Vec::new();
    files_ending(&repo.join("crates"), ".snap", &mut snapshots);
    files_ending(&repo.join("xtask"), ".snap", &mut snapshots);
    assert!(
        snapshots.len() > 50,
        "found only {} snapshots",
        snapshots.len()
    );
    let wrong: Vec<String> = snapshots
        .iter()
        .filter_map(|snap| {
            let text = std::fs::read_to_string(snap).unwrap();
            let header = text.strip_prefix("---\n")?.split("\n---\n").next()?;
            let source = header.lines().find_map(|l| l.strip_prefix("source: "));
            match source {
                Some(source) if repo.join(source).is_file() => None,
                _ => Some(format!(
                    "{}: source {source:?}",
                    snap.strip_prefix(&repo).unwrap()
                )),
            }
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "these snapshots do not name an existing source file (fix their `source:` line):\n  {}",
        wrong.join("\n  ")
    );
}
