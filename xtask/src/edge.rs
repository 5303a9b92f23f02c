//! The edge: where the repository is, how an error is printed, and which exit status it means.
//! Written once here for every subcommand.

use std::process::ExitCode;

use boma_harness::{ExitClass, HarnessError};
use camino::{Utf8Path, Utf8PathBuf};

/// The repository this invocation works on, found at run time — never baked in at compile
/// time: with a target directory shared between checkouts, cargo can run a binary built in
/// another checkout, and a tool that tests *this* checkout's roles must not read another's.
/// `cargo run` sets `CARGO_MANIFEST_DIR` (to `<repo>/xtask`); run directly, the binary takes the
/// git top level of the working directory. Either must be a boma checkout.
pub fn repo_root() -> Result<Utf8PathBuf, HarnessError> {
    let candidate = match std::env::var("CARGO_MANIFEST_DIR") {
        Ok(manifest) => Utf8Path::new(&manifest)
            .parent()
            .map(Utf8Path::to_owned)
            .unwrap_or_else(|| Utf8PathBuf::from(manifest)),
        Err(_) => {
            let cwd = std::env::current_dir()
                .ok()
                .and_then(|d| Utf8PathBuf::from_path_buf(d).ok())
                .ok_or_else(|| {
                    HarnessError::Refused("the working directory is not a UTF-8 path".into())
                })?;
            git_top_level(&cwd).unwrap_or(cwd)
        }
    };
    if is_boma_checkout(&candidate) {
        Ok(candidate)
    } else {
        Err(HarnessError::Refused(format!(
            "{candidate} is not a boma checkout (no xtask/Cargo.toml and profiles/): run `cargo xtask` inside the repository"
        )))
    }
}

/// Whether `dir` looks like the root of this repository.
pub fn is_boma_checkout(dir: &Utf8Path) -> bool {
    dir.join("xtask/Cargo.toml").is_file() && dir.join("profiles").is_dir()
}

/// The nearest ancestor of `dir` (itself included) that holds a `.git`.
fn git_top_level(dir: &Utf8Path) -> Option<Utf8PathBuf> {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .map(Utf8Path::to_owned)
}

/// Print the error's chain (secrets masked) and map it to the exit status.
pub fn fail(error: &HarnessError) -> ExitCode {
    print_error(error);
    exit(error.class())
}

pub fn print_error(error: &HarnessError) {
    boma_exec::progress::line(&format!("error: {}", boma_harness::error_chain(error)));
}

/// The exit status of a class: 1 failed, 2 refused, 128+n interrupted.
pub fn exit(class: ExitClass) -> ExitCode {
    ExitCode::from(class.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_checkout_is_a_boma_checkout_and_tmp_is_not() {
        let here = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert!(is_boma_checkout(here));
        let tmp = tempfile::tempdir().unwrap();
        assert!(!is_boma_checkout(Utf8Path::from_path(tmp.path()).unwrap()));
    }

    #[test]
    fn git_top_level_is_found_from_a_subdirectory() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        assert_eq!(git_top_level(&root.join("a/b")).as_deref(), Some(root));
    }

    #[test]
    fn classes_map_to_exit_statuses() {
        let refused = HarnessError::Refused("x".into());
        assert_eq!(refused.class().code(), 2);
        let interrupted =
            HarnessError::Interrupted(boma_exec::interrupt::Interrupted { signal: 15 });
        assert_eq!(interrupted.class().code(), 143);
    }
}
