//! `check_repo` on small fixture trees (`tests/fixtures/<scenario>/`), each a miniature boma
//! repository: what it reads, what it reports and how it names files.

use boma_tags::{FIX, Report, check_repo};
use camino::{Utf8Path, Utf8PathBuf};

fn fixture(name: &str) -> Utf8PathBuf {
    Utf8Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn lines(report: &Report) -> Vec<String> {
    report.findings.iter().map(ToString::to_string).collect()
}

#[test]
fn clean_tree_passes_with_a_summary() {
    let report = check_repo(&fixture("clean")).unwrap();
    assert_eq!(lines(&report), Vec::<String>::new());
    // site.yml, db's tasks, web's handlers, tasks and tasks/sub (defaults/ is not read).
    assert_eq!(report.files, 5);
    assert_eq!(
        report.summary(),
        "check-tags: ok, 24 tags in 5 files against 2 role names and 3 concerns in tests/tags.yml"
    );
}

#[test]
fn unknown_tags_are_all_listed_with_path_and_line() {
    let report = check_repo(&fixture("unknown")).unwrap();
    let expected: Vec<String> = [
        ("playbooks/site.yml", 7, "confg"),
        ("playbooks/site.yml", 12, "database"),
        ("roles/web/handlers/main.yml", 4, "restart"),
        ("roles/web/tasks/main.yml", 6, "pkgs"),
        ("roles/web/tasks/main.yml", 10, "servic"),
        ("roles/web/tasks/main.yml", 14, "firewall"),
        ("roles/web/tasks/main.yml", 27, "dbb"),
        ("roles/web/tasks/main.yml", 31, "cleanup"),
    ]
    .iter()
    .map(|(path, line, tag)| format!("{path}:{line}: unknown tag '{tag}': {FIX}"))
    .collect();
    assert_eq!(lines(&report), expected);
    assert!(report.summary().starts_with("check-tags: 8 finding(s), "));
}

#[test]
fn malformed_yaml_is_reported_with_its_path_and_the_rest_still_checked() {
    let report = check_repo(&fixture("malformed")).unwrap();
    let found = lines(&report);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert_eq!(
        found[0],
        format!("playbooks/site.yml:4: unknown tag 'wbe': {FIX}")
    );
    assert!(
        found[1].starts_with("roles/web/tasks/broken.yml:4: malformed yaml: "),
        "{found:#?}"
    );
    assert!(
        found[2].starts_with("roles/web/tasks/main.yml:5: malformed yaml: "),
        "{found:#?}"
    );
}

#[test]
fn malformed_vocabulary_is_an_error_naming_file_and_line() {
    let err = check_repo(&fixture("bad-vocabulary")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tests/tags.yml:3: malformed vocabulary: a tag name must be a non-empty string"
    );
}

#[test]
fn missing_vocabulary_is_an_error_naming_the_file() {
    let root = fixture("does-not-exist");
    let err = check_repo(&root).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot read {root}/tests/tags.yml")
    );
}
