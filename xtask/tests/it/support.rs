//! What the repository-reading tests share: the repository root, a file of it, and the
//! integration_test role's package list.

#![allow(dead_code)] // each test file uses its own part

use camino::{Utf8Path, Utf8PathBuf};

/// The repository: the parent of `xtask/`.
pub fn repo() -> Utf8PathBuf {
    Utf8Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_owned()
}

/// The text of `path`, relative to the repository.
pub fn read(path: &str) -> String {
    let path = repo().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The items of `integration_test__packages` in the role's defaults: the VM substrate.
pub fn role_packages() -> Vec<String> {
    read("roles/integration_test/defaults/main.yml")
        .lines()
        .skip_while(|line| *line != "integration_test__packages:")
        .skip(1)
        .take_while(|line| line.starts_with("  - "))
        .map(|line| line.trim_start_matches("  - ").trim().to_owned())
        .collect()
}
