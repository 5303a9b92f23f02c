//! House rules as tests, so `cargo test` is the one gate (rust-analyzer's `tidy.rs` idea):
//! every Ansible tag is known (check-tags), every Rust file opens with a `//!` line saying
//! what it is for, each crate's integration tests are one test binary, every snapshot names
//! its existing source, every repository path the docs name exists, and every crate has a
//! row in ARCHITECTURE.md's code map.

use crate::support::*;

use camino::{Utf8Path, Utf8PathBuf};

/// What the walks never enter, nor a doc's path may lie in: what builds and runs make (build
/// output, the venv, live runs) and git's own files.
const GENERATED: [&str; 5] = ["target", ".venv", ".git", ".run", "node_modules"];

/// Every file under `dir` whose name ends with `suffix`, skipping what is generated.
fn files_ending(dir: &Utf8Path, suffix: &str, found: &mut Vec<Utf8PathBuf>) {
    let Ok(entries) = dir.read_dir_utf8() else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path().to_owned();
        let name = entry.file_name();
        if GENERATED.contains(&name) {
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

/// The paths a text names in backticks, each as written up to a `:line`, `::item` or
/// `#anchor`: a token with no white space (not a command or a message) and of path characters
/// only (no placeholder or pattern: `<host>`, `*`, `…`, `{a,b}`, `$VAR`), not absolute, not in
/// a generated directory (`.run/`, `target/`), holding a `/` or ending in `.md` — and of
/// those, the ones that end in `.md` or whose first component `is_entry` says is there: a
/// `README.md` anywhere, `roles/base/`, `src/cycle.rs` in a crate; not
/// `ExecStart=/bin/false`, `~/.ssh/config` or `10.0.0.0/24`. Pure.
fn paths_named_in(text: &str, is_entry: impl Fn(&str) -> bool) -> Vec<&str> {
    let path_char = |c: char| c.is_ascii_alphanumeric() || "._-+/".contains(c);
    text.split('`')
        .skip(1)
        .step_by(2) // the chunks inside backticks
        .filter(|token| !token.contains(char::is_whitespace))
        .filter_map(|token| {
            let token = token.split([':', '#']).next()?;
            let path = token.strip_prefix("./").unwrap_or(token);
            let path = path.trim_end_matches(['.', ',']);
            let first = path.split('/').next()?;
            let is_path = !first.is_empty()
                && path.chars().all(path_char)
                && (path.contains('/') || path.ends_with(".md"))
                && !path.split('/').any(|c| c == ".." || GENERATED.contains(&c));
            (is_path && (path.ends_with(".md") || is_entry(first))).then_some(path)
        })
        .collect()
}

/// What a doc file names that does not exist, as `file: `path``. A path is looked up from the
/// repository's root, from the root of the crate the file is in (a crate's docs name its own
/// `src/…` and `tests/…`) and from the file's own directory (a README beside what it names).
/// In Rust files only the module docs (`//!`) count: they are the map; other comments are the
/// code's own.
fn missing_paths(repo: &Utf8Path, files: &[Utf8PathBuf]) -> Vec<String> {
    let mut missing = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let text = if file.extension() == Some("rs") {
            let docs: Vec<&str> = text
                .lines()
                .filter(|l| l.trim_start().starts_with("//!"))
                .collect();
            docs.join("\n")
        } else {
            text
        };
        let here = file.parent().unwrap_or(repo);
        let krate = here
            .ancestors()
            .take_while(|d| d.starts_with(repo) && *d != repo)
            .find(|d| d.join("Cargo.toml").is_file())
            .unwrap_or(repo);
        let bases = [repo, krate, here];
        let is_entry = |first: &str| bases.iter().any(|base| base.join(first).exists());
        for path in paths_named_in(&text, is_entry) {
            if !bases.iter().any(|base| base.join(path).exists()) {
                let at = file.strip_prefix(repo).unwrap_or(file);
                missing.push(format!("{at}: `{path}`"));
            }
        }
    }
    missing.sort();
    missing.dedup();
    missing
}

/// Every `*.md` of the repository, and every `.rs` of its crates and xtask.
fn doc_files(repo: &Utf8Path) -> Vec<Utf8PathBuf> {
    let mut files = Vec::new();
    files_ending(repo, ".md", &mut files);
    files_ending(&repo.join("crates"), ".rs", &mut files);
    files_ending(&repo.join("xtask"), ".rs", &mut files);
    files
}

#[test]
fn paths_in_backticks_are_found_and_placeholders_and_non_paths_are_not() {
    let entries = ["crates", "profiles", "roles", "src", "tests"];
    let text = "see `crates/boma-ssh/src/wrap.rs:12`, `crates/boma-ssh/src/lib.rs::wrap`, \
                `profiles/<host>.json`, `~/.ssh/config`, `/srv/caddy/data`, `README.md`, \
                `tests/integration/.run/boma-it-x/`, `target/bench.json`, `cargo xtask it`, \
                `roles/base/`, `docs/decisions/*.md`, `ExecStart=/bin/false`, \
                `10.231.0.0/24`, `src/cycle.rs`, `./roles/base`, `tests/catalogue/README.md#modes`, \
                `connection_plugins/ssh.py`, `ELSEWHERE.md`, `roles/x.yml:3: an error`.\n\
                ```sh\ncat roles/x\n```\nthen `roles/y`";
    assert_eq!(
        paths_named_in(text, |first| entries.contains(&first)),
        [
            "crates/boma-ssh/src/wrap.rs",
            "crates/boma-ssh/src/lib.rs",
            "README.md",
            "roles/base/",
            "src/cycle.rs",
            "roles/base",
            "tests/catalogue/README.md",
            "ELSEWHERE.md",
            "roles/y",
        ]
    );
}

#[test]
fn a_doc_naming_a_missing_path_is_found_wherever_the_path_is_resolved_from() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Utf8Path::from_path(tmp.path()).unwrap();
    let krate = repo.join("crates/a");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::create_dir_all(repo.join("roles/base/tasks")).unwrap();
    std::fs::create_dir_all(repo.join("roles/base/files")).unwrap();
    std::fs::write(repo.join("roles/base/files/x.conf"), "").unwrap();
    std::fs::write(krate.join("Cargo.toml"), "").unwrap();
    std::fs::write(
        krate.join("src/lib.rs"),
        "//! Built from `src/lib.rs` and `src/gone.rs`; see `roles/base/`.\n\
         // `roles/not-a-doc-line/` is a comment, not the map.\nfn f() {}\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("README.md"),
        "`roles/base/`, `roles/web/`, `crates/a/src/lib.rs`, `GONE.md`, `profiles/<host>.json`",
    )
    .unwrap();
    std::fs::write(
        repo.join("roles/base/README.md"),
        "`files/x.conf` lies beside this file, `tasks/main.yml` does not",
    )
    .unwrap();
    let files = doc_files(repo);
    assert_eq!(files.len(), 3, "{files:?}");
    assert_eq!(
        missing_paths(repo, &files),
        [
            "README.md: `GONE.md`",
            "README.md: `roles/web/`",
            "crates/a/src/lib.rs: `src/gone.rs`",
            "roles/base/README.md: `tasks/main.yml`",
        ]
    );
}

#[test]
fn every_repository_path_the_docs_name_exists() {
    let repo = repo();
    let files = doc_files(&repo);
    assert!(
        files.len() > 100,
        "the walk found only {} files",
        files.len()
    );
    let missing = missing_paths(&repo, &files);
    assert!(
        missing.is_empty(),
        "these docs name repository paths that do not exist (fix the doc):\n  {}",
        missing.join("\n  ")
    );
}

/// The crate directories (`crates/<name>`, and `xtask`) that have no row in the code map of
/// `architecture` (ARCHITECTURE.md's text): a row is a table line under `## Code map` whose
/// first cell names the directory in backticks.
fn unmapped_crates(repo: &Utf8Path, architecture: &str) -> Vec<String> {
    let rows: Vec<&str> = architecture
        .lines()
        .skip_while(|l| *l != "## Code map")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(|cell| cell.trim_end_matches('/'))
        .collect();
    let mut crates: Vec<String> = repo
        .join("crates")
        .read_dir_utf8()
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| format!("crates/{}", e.file_name()))
        .collect();
    crates.push("xtask".to_owned());
    crates.sort();
    crates.retain(|c| !rows.contains(&c.as_str()));
    crates
}

#[test]
fn a_crate_without_a_row_in_the_code_map_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Utf8Path::from_path(tmp.path()).unwrap();
    for name in ["a", "b", "c"] {
        std::fs::create_dir_all(repo.join("crates").join(name)).unwrap();
        std::fs::write(repo.join("crates").join(name).join("Cargo.toml"), "").unwrap();
    }
    let architecture = "| `crates/c` | named before the code map |\n\n## Code map\n\n\
                        | path | job |\n| --- | --- |\n| `xtask/` | the CLI |\n\
                        | `crates/a` | a, not `crates/b` |\n\n## Invariants\n";
    assert_eq!(
        unmapped_crates(repo, architecture),
        ["crates/b", "crates/c"]
    );
}

#[test]
fn every_crate_has_a_row_in_the_code_map() {
    let repo = repo();
    let unmapped = unmapped_crates(&repo, &read("ARCHITECTURE.md"));
    assert!(
        unmapped.is_empty(),
        "ARCHITECTURE.md's code map has no row for: {}",
        unmapped.join(", ")
    );
}

/// The crates that render and decide (ARCHITECTURE.md: "Pure crates cannot run a program").
const PURE: [&str; 9] = [
    "boma-cloudinit",
    "boma-fleet",
    "boma-inventory",
    "boma-name",
    "boma-report",
    "boma-ssh",
    "boma-state",
    "boma-tags",
    "boma-yaml",
];

/// The boma crates a `Cargo.toml` (its text) depends on: its `[dependencies]`, not its dev- or
/// build-dependencies. Pure.
fn boma_dependencies(manifest: &str) -> Vec<&str> {
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[dependencies]")
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter_map(|l| l.split(['.', ' ', '=']).next())
        .filter(|name| name.starts_with("boma-"))
        .collect()
}

#[test]
fn a_manifests_boma_dependencies_are_its_dependencies_only() {
    let manifest = "[package]\nname = \"boma-x\"\n\n[dependencies]\nboma-exec.workspace = true\n\
                    boma-name = { path = \"../boma-name\" }\nserde.workspace = true\n\n\
                    [dev-dependencies]\nboma-vm.workspace = true\n";
    assert_eq!(boma_dependencies(manifest), ["boma-exec", "boma-name"]);
}

/// A pure crate that could reach the spawner could run a program; its dependencies, direct or
/// not, never include `boma-exec`.
#[test]
fn no_pure_crate_reaches_the_spawner() {
    let manifest = |krate: &str| read(&format!("crates/{krate}/Cargo.toml"));
    let mut wrong = Vec::new();
    for krate in PURE {
        let mut reached = std::collections::BTreeSet::new();
        let mut todo = vec![krate.to_owned()];
        while let Some(next) = todo.pop() {
            for dep in boma_dependencies(&manifest(&next)) {
                if reached.insert(dep.to_owned()) {
                    todo.push(dep.to_owned());
                }
            }
        }
        if reached.contains("boma-exec") {
            wrong.push(format!("{krate} (through {reached:?})"));
        }
    }
    assert!(
        wrong.is_empty(),
        "these pure crates reach boma-exec, so they could run a program: {}",
        wrong.join(", ")
    );
}
