//! Real child processes: a stand-in for the harness binary (a shell script) that passes, is
//! killed by SIGKILL before it reports, or crashes, run by the real spawner.

use std::sync::Mutex;

use boma_report::RunResult;
use camino::{Utf8Path, Utf8PathBuf};

use super::*;
use crate::bounds::{Bounds, Charge};
use crate::combine::combine;
use crate::schedule::{Job, Turn, run_all};

/// The stand-in child: `child <host> <report>`. `passes` writes a passing report; `killed`
/// writes its pid and SIGKILLs itself; `crashes` exits 101 as a panic would.
const CHILD: &str = r#"#!/bin/sh
host=$1 report=$2
echo "$host: starting" >&2
case $host in
passes)
    printf '{"started_at":"2026-12-01T10:00:00Z","total_seconds":1,"runs":[{"host":"passes","cert_tier":"internal","result":"passed","rebooted":true,"started_at":"2026-12-01T10:00:00Z"}]}' > "$report"
    exit 0 ;;
killed)
    echo $$ > "$(dirname "$report")/killed.pid"
    kill -KILL $$ ;;
crashes)
    echo "thread 'main' panicked" >&2
    exit 101 ;;
esac
"#;

struct Rig {
    _tmp: tempfile::TempDir,
    dir: Utf8PathBuf,
    exe: Utf8PathBuf,
}

impl Rig {
    fn new() -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap().to_owned();
        let exe = root.join("child");
        std::fs::write(&exe, CHILD).unwrap();
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let dir = root.join("parallel");
        std::fs::create_dir_all(&dir).unwrap();
        Rig {
            _tmp: tmp,
            dir,
            exe,
        }
    }
}

fn args(host: &str, report: &Utf8Path) -> Vec<String> {
    vec![host.to_owned(), report.to_string()]
}

#[test]
fn a_child_killed_before_it_reports_is_cleaned_up_by_its_pid_and_one_that_reports_is_not() {
    let rig = Rig::new();
    // A report left by an earlier run must not stand for this one.
    std::fs::write(rig.dir.join("killed.json"), "{}").unwrap();
    let cleaned: Mutex<Vec<(String, u32)>> = Mutex::new(Vec::new());
    let leftovers = |host: &str, pid: u32| {
        cleaned.lock().unwrap().push((host.to_owned(), pid));
        Ok(vec![format!("its VM boma-it-{host}-0a1b2c3d")])
    };
    let children = Children {
        exe: rig.exe.clone(),
        dir: rig.dir.clone(),
        args: &args,
        leftovers: &leftovers,
    };

    let passed = children.run("passes");
    assert_eq!(passed.ended, Ended::Exited(0));
    assert_eq!(
        passed.report.as_ref().map(|r| r.result()),
        Some(RunResult::Passed)
    );
    assert_eq!(passed.cleanup, None);

    let killed = children.run("killed");
    assert_eq!(killed.ended, Ended::Killed(9));
    assert_eq!(killed.report, None);
    assert_eq!(
        killed.cleanup,
        Some(Ok(vec!["its VM boma-it-killed-0a1b2c3d".to_owned()]))
    );
    let pid: u32 = std::fs::read_to_string(rig.dir.join("killed.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(*cleaned.lock().unwrap(), [("killed".to_owned(), pid)]);
    assert_eq!(
        std::fs::read_to_string(&killed.log).unwrap(),
        "killed: starting\n"
    );

    let crashed = children.run("crashes");
    assert_eq!(crashed.ended, Ended::Exited(101));
    assert!(crashed.cleanup.is_some(), "no report: cleaned up");
}

#[test]
fn a_parallel_run_reports_every_host_in_order_whatever_became_of_its_child() {
    let rig = Rig::new();
    let leftovers = |_: &str, _: u32| Ok(Vec::new());
    let children = Children {
        exe: rig.exe.clone(),
        dir: rig.dir.clone(),
        args: &args,
        leftovers: &leftovers,
    };
    let jobs: Vec<Job> = ["passes", "killed", "crashes"]
        .map(|host| Job {
            host: host.to_owned(),
            charge: Charge {
                mem_mib: 1,
                vcpus: 1,
            },
        })
        .to_vec();
    let turns = run_all(&jobs, Bounds::new(2, 100, 4), &|| false, &|job| {
        children.run(&job.host)
    });
    assert!(turns.iter().all(|t| matches!(t, Turn::Ran(_))));
    let at = "2026-12-01T10:00:00Z".parse().unwrap();
    let runs = combine(&jobs, turns, None, "internal", at);
    let seen: Vec<(&str, RunResult)> = runs.iter().map(|r| (r.host.as_str(), r.result)).collect();
    assert_eq!(
        seen,
        [
            ("passes", RunResult::Passed),
            ("killed", RunResult::Error),
            ("crashes", RunResult::Error)
        ]
    );
    assert!(
        runs[1]
            .error
            .as_deref()
            .unwrap()
            .starts_with("killed by SIGKILL before it reported; it left nothing to remove"),
        "{:?}",
        runs[1].error
    );
}

/// A report as a child writes it, with one run of `result`.
fn report_of(result: &str) -> Report {
    let text = format!(
        r#"{{"started_at":"2026-12-01T10:00:00Z","total_seconds":1,"runs":[{{"host":"h","cert_tier":"internal","result":"{result}","rebooted":true,"started_at":"2026-12-01T10:00:00Z"}}]}}"#
    );
    serde_json::from_str(&text).unwrap()
}

#[test]
fn an_exit_0_reads_as_the_result_its_report_gives_never_as_a_bare_pass() {
    let expected = report_of("expected_failure");
    assert_eq!(
        ended_line(&Ended::Exited(0), Some(&expected)),
        "expected failure (exit 0)"
    );
    assert_eq!(
        ended_line(&Ended::Exited(0), Some(&report_of("passed"))),
        "passed (exit 0)"
    );
    assert_eq!(
        ended_line(&Ended::Exited(1), Some(&report_of("failed"))),
        "failed (exit 1)"
    );
    // No report: how the process ended.
    assert_eq!(ended_line(&Ended::Exited(1), None), "exited 1");
    assert_eq!(ended_line(&Ended::Killed(9), None), "was killed by SIGKILL");
}
