//! A stdout nobody reads any more (`| head`, a dropped session) costs nothing: `it` writes
//! `--report` and `--junit` first, does not panic on the broken pipe, says so on stderr, and
//! exits with its verdict.

use std::process::Stdio;

use camino::Utf8Path;

#[test]
fn a_closed_stdout_is_not_a_panic_and_the_report_files_are_written() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Utf8Path::from_path(tmp.path()).unwrap();
    let (report, junit) = (root.join("report.json"), root.join("junit.xml"));
    // A pipe whose reading end is gone: every write to it fails with EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    // From outside boma-exec on purpose: the test needs the child's stdout to be that pipe.
    #[allow(clippy::disallowed_methods)]
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["it", "no-such-host", "--report", report.as_str()])
        .args(["--junit", junit.as_str()])
        .env("CARGO_MANIFEST_DIR", env!("CARGO_MANIFEST_DIR"))
        .env("BOMA_IT_CACHE", root.join("cache"))
        .env("HOME", root)
        .env_remove("XDG_STATE_HOME")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("cannot write to stdout"), "{stderr}");
    // A host without a profile is refused before anything is created: exit 2, as ever.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let json = std::fs::read_to_string(&report).expect("--report is written");
    assert!(json.contains(r#""result": "refused""#), "{json}");
    assert!(json.contains(r#""host": "no-such-host""#), "{json}");
    let xml = std::fs::read_to_string(&junit).expect("--junit is written");
    assert!(xml.contains("no-such-host"), "{xml}");
}
