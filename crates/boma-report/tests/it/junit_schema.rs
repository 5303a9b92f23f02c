//! Every JUnit rendering is valid against `tests/junit.xsd`, checked by a real validator
//! (libxml2's `xmllint`), which also rejects broken documents, and hostile text survives the
//! round trip through a real XML parser.

use crate::scenarios;

use boma_exec::{Captured, CmdExt, ExecError};
use boma_report::render_junit;
use xshell::{Shell, cmd};

const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/junit.xsd");
const MISSING: &str = "`xmllint` is not installed: install the Debian package libxml2-utils \
    (`apt-get install libxml2-utils`); the JUnit schema tests need a real validator and cannot pass without one";

/// xmllint's exit status when a well-formed document breaks the schema.
const SCHEMA_INVALID: i32 = 3;

/// Run `xmllint <args> -` on `doc`; a missing `xmllint` fails the test with the package to install.
fn xmllint(args: &[&str], doc: &str) -> Captured {
    assert!(boma_exec::on_path("xmllint"), "{MISSING}");
    let sh = Shell::new().expect("a shell");
    match cmd!(sh, "xmllint {args...} -")
        .exec()
        .stdin(doc)
        .allow_fail()
        .run()
    {
        Ok(out) => out,
        Err(ExecError::NotFound { .. }) => panic!("{MISSING}"),
        Err(e) => panic!("could not run xmllint: {e}"),
    }
}

/// Why the validator refused a document: its exit status and what it said.
#[derive(Debug)]
struct Rejected {
    status: Option<i32>,
    stderr: String,
}

fn validate(doc: &str) -> Result<(), Rejected> {
    let out = xmllint(&["--noout", "--nonet", "--schema", SCHEMA], doc);
    match out.status.code() {
        Some(0) => Ok(()),
        // 5: the schema itself did not compile; no document can be judged by it.
        Some(5) => panic!("tests/junit.xsd does not compile:\n{}", out.stderr),
        status => Err(Rejected {
            status,
            stderr: out.stderr,
        }),
    }
}

/// The value of one XPath string expression, as the real parser reads the document.
fn xpath(doc: &str, expr: &str) -> String {
    let out = xmllint(&["--nonet", "--xpath", expr], doc);
    assert!(out.success(), "xmllint --xpath {expr}: {}", out.stderr);
    // xmllint ends a string result with a newline of its own.
    let value = out.stdout.strip_suffix('\n').unwrap_or(&out.stdout);
    value.to_owned()
}

#[test]
fn every_scenario_is_valid_junit() {
    for (name, report) in scenarios::all() {
        let doc = render_junit(&report);
        if let Err(rejected) = validate(&doc) {
            panic!("{name}: rejected by tests/junit.xsd: {rejected:?}\n{doc}");
        }
    }
}

/// The validation is real: documents one mistake away from a rendered one are rejected, each
/// for the rule it breaks.
#[test]
fn broken_documents_are_rejected() {
    let good = render_junit(&scenarios::red());
    validate(&good).expect("the unbroken document is valid");
    let breakages = [
        (
            r#"<testcase name="up" "#,
            "<testcase ",
            "The attribute 'name' is required but missing",
        ),
        (
            r#"<testcase name="up" "#,
            r#"<testcase name="  " "#,
            "'name'",
        ),
        (r#"time="41.200""#, r#"time="-41.2""#, "'time'"),
        (r#"time="41.200""#, r#"time="4.12e1""#, "'time'"),
        (
            r#"type="pure_drop""#,
            "",
            "The attribute 'type' is required but missing",
        ),
        (r#"tests="10""#, r#"tests="ten""#, "'tests'"),
        (
            r#"timestamp="2026-11-29T01:02:03""#,
            r#"timestamp="2026-11-29T01:02:03Z""#,
            "'timestamp'",
        ),
        (
            "    <system-err/>\n",
            "    <system-err/>\n    <testcase name=\"late\" classname=\"c\" time=\"0\"/>\n",
            "'testcase': This element is not expected",
        ),
        (
            "<failure message=\"pure_drop\"",
            "<skipped/><failure message=\"pure_drop\"",
            "'failure': This element is not expected",
        ),
        (r#"id="0""#, r#"id="first""#, "'id'"),
    ];
    for (from, to, complaint) in breakages {
        assert!(good.contains(from), "the document no longer holds {from:?}");
        let broken = good.replacen(from, to, 1);
        let rejected = validate(&broken).expect_err(&format!("accepted with {from:?} → {to:?}"));
        assert_eq!(
            rejected.status,
            Some(SCHEMA_INVALID),
            "{to:?}: {rejected:?}"
        );
        assert!(
            rejected.stderr.contains("Schemas validity error")
                && rejected.stderr.contains(complaint),
            "{to:?}: expected {complaint:?} in:\n{}",
            rejected.stderr
        );
    }
}

#[test]
fn hostile_text_is_escaped_and_the_document_still_validates() {
    let doc = render_junit(&scenarios::hostile());
    for raw in [
        "]]>", "\u{0}", "\u{7}", "\u{1b}", "\u{fffe}", "&entity;", "<b>", "<x>",
    ] {
        assert!(!doc.contains(raw), "{raw:?} reached the document:\n{doc}");
    }
    if let Err(rejected) = validate(&doc) {
        panic!("rejected: {rejected:?}\n{doc}");
    }
    // What a CI server reads back: the text itself, minus only what XML cannot hold.
    let cases = [
        ("string(/testsuites/testsuite/@name)", r#"h<o>s&t"'"#),
        ("string(/testsuites/testsuite/@hostname)", "boma-it-red"),
        (
            "string(//testcase[1]/@name)",
            "apply playbooks/x.yml --tags \"a,b\" <&> ]]>",
        ),
        (
            "string(//testcase[1]/failure/@message)",
            "fatal: [vm]: FAILED! => {\"msg\": \"<b>&amp; ]]> colour\"}",
        ),
        (
            "string(//testcase[1]/failure)",
            "fatal: [vm]: FAILED! => {\"msg\": \"<b>&amp; ]]> colour\"}\r\nsecond line\ttab end",
        ),
        ("string(//testcase[2]/@name)", "check ]]> & <x>"),
        ("string(//testcase[2]/failure/@type)", "timeout\"<>&"),
        (
            "string(//testcase[2]/failure)",
            "]]>\n<tag attr=\"x\">&entity;</tag><![CDATA[ x ]]>",
        ),
        (
            "string(//property[@name='diagnostics']/@value)",
            "/tmp/a&b/<dir>/]]>",
        ),
        ("string(//property[@name='accel']/@value)", "tcg"),
        ("string(//property[@name='cert_tier']/@value)", "int'ernal"),
    ];
    for (expr, expected) in cases {
        assert_eq!(xpath(&doc, expr), expected, "{expr}");
    }
    let out = xpath(&doc, "string(//system-out)");
    assert!(
        out.contains("key changed: <old> & \"new\"") && out.contains("/tmp/a&b/<dir>/]]>"),
        "{out}"
    );
}
