//! The fleet file: what it accepts, each refusal and its message, and the repository's own
//! fleets.

use boma_fleet::{Fleet, FleetError, RebootKind, Target, load_fleet, parse_fleet, resolve_target};
use camino::{Utf8Path, Utf8PathBuf};

const FILE: &str = "fleets/web.json";

fn profiles() -> Vec<String> {
    ["web-a", "web-b", "web-c", "askari"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

fn check(text: &str) -> Result<Fleet, FleetError> {
    Fleet::check("web", parse_fleet(FILE, text)?, &profiles())
}

fn refused(text: &str) -> String {
    match check(text) {
        Ok(fleet) => panic!("accepted: {fleet:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_minimal_fleet_gets_both_reboots_and_no_boot_order() {
    let fleet = check(r#"{"members": ["web-a", "web-b"]}"#).unwrap();
    assert_eq!(fleet.name(), "web");
    assert_eq!(fleet.members(), ["web-a", "web-b"]);
    assert_eq!(fleet.reboots(), [RebootKind::Rolling, RebootKind::Together]);
    assert_eq!(fleet.boot_order(), None);
    assert!(fleet.extra_vars_files().is_empty());
    assert!(fleet.expect().is_empty());
    assert!(fleet.verify().is_empty());
}

#[test]
fn every_key_is_read() {
    let fleet = check(
        r#"{
        "members": ["web-b", "web-a"],
        "extra_vars_files": ["overrides/web-red.yml"],
        "reboots": ["together"],
        "boot_order": ["web-a", "web-b"],
        "expect": ["after together (boot order web-a, web-b): web-a: unit_failed x.service"],
        "verify": ["tests/verify/web.yml"]
    }"#,
    )
    .unwrap();
    assert_eq!(fleet.members(), ["web-b", "web-a"]);
    assert_eq!(
        fleet.extra_vars_files(),
        [Utf8PathBuf::from("overrides/web-red.yml")]
    );
    assert_eq!(fleet.reboots(), [RebootKind::Together]);
    assert_eq!(
        fleet.boot_order(),
        Some(["web-a".to_owned(), "web-b".to_owned()].as_slice())
    );
    assert_eq!(fleet.expect().len(), 1);
    assert_eq!(fleet.verify(), [Utf8PathBuf::from("tests/verify/web.yml")]);
}

#[test]
fn one_member_is_a_profile_not_a_fleet() {
    let m = refused(r#"{"members": ["web-a"]}"#);
    assert!(m.starts_with("fleets/web.json:1:"), "{m}");
    assert!(m.contains("members: a fleet has at least 2 members"), "{m}");
    assert!(refused(r#"{"members": []}"#).contains("at least 2"));
}

#[test]
fn a_member_listed_twice_is_refused() {
    let m = refused(r#"{"members": ["web-a", "web-b", "web-a"]}"#);
    assert!(m.contains("members: member `web-a` is listed twice"), "{m}");
}

#[test]
fn a_member_without_a_profile_is_refused_with_the_profiles_that_exist() {
    let m = refused(r#"{"members": ["web-a", "web-x"]}"#);
    assert_eq!(
        m,
        "fleets/web.json: member `web-x` has no profile (profiles/web-x.json): every member is an ordinary profile; existing profiles: web-a, web-b, web-c, askari"
    );
}

#[test]
fn a_member_name_that_cannot_be_a_host_is_refused() {
    for bad in ["", ".hidden", "-flag", "a/b", "a b", "ü"] {
        let m = refused(&format!(r#"{{"members": ["web-a", {:?}]}}"#, bad));
        assert!(m.contains("members: `"), "{bad}: {m}");
        assert!(m.contains("cannot be a member"), "{bad}: {m}");
    }
}

#[test]
fn a_fleet_named_like_a_profile_is_refused() {
    let file = parse_fleet(FILE, r#"{"members": ["web-a", "web-b"]}"#).unwrap();
    let m = Fleet::check("askari", file, &profiles())
        .unwrap_err()
        .to_string();
    assert!(
        m.starts_with("`askari` is both a profile (profiles/askari.json) and a fleet"),
        "{m}"
    );
}

#[test]
fn boot_order_must_name_every_member_once() {
    let missing =
        refused(r#"{"members": ["web-a", "web-b", "web-c"], "boot_order": ["web-b", "web-a"]}"#);
    assert_eq!(
        missing,
        "fleets/web.json: boot_order: must name every member once: it leaves out web-c"
    );
    let extra =
        refused(r#"{"members": ["web-a", "web-b"], "boot_order": ["web-b", "web-a", "askari"]}"#);
    assert_eq!(
        extra,
        "fleets/web.json: boot_order: must name every member once: it names non-members askari"
    );
    let both = refused(r#"{"members": ["web-a", "web-b"], "boot_order": ["web-b", "web-c"]}"#);
    assert!(
        both.ends_with("it leaves out web-a and names non-members web-c"),
        "{both}"
    );
    let twice =
        refused(r#"{"members": ["web-a", "web-b"], "boot_order": ["web-b", "web-a", "web-b"]}"#);
    assert!(
        twice.contains("boot_order: `web-b` is booted twice"),
        "{twice}"
    );
}

#[test]
fn boot_order_without_a_together_round_is_refused() {
    let m = refused(
        r#"{"members": ["web-a", "web-b"], "reboots": ["rolling"], "boot_order": ["web-b", "web-a"]}"#,
    );
    assert_eq!(
        m,
        "fleets/web.json: boot_order: applies only to the `together` round, which `reboots` leaves out"
    );
}

#[test]
fn reboots_must_be_known_once_and_not_empty() {
    assert!(refused(r#"{"members": ["web-a", "web-b"], "reboots": []}"#).contains("at least one"));
    assert!(
        refused(r#"{"members": ["web-a", "web-b"], "reboots": ["rolling", "rolling"]}"#)
            .contains("`rolling` is listed twice")
    );
    let m = refused(r#"{"members": ["web-a", "web-b"], "reboots": ["staggered"]}"#);
    assert!(m.contains("reboots[0]: unknown variant `staggered`"), "{m}");
}

#[test]
fn unknown_keys_missing_members_and_bad_json_are_refused_with_a_position() {
    let typo = refused(r#"{"members": ["web-a", "web-b"], "boot-order": []}"#);
    assert!(
        typo.starts_with("fleets/web.json:1:") && typo.contains("unknown field `boot-order`"),
        "{typo}"
    );
    let missing = refused(r#"{"reboots": ["rolling"]}"#);
    assert!(missing.contains("missing field `members`"), "{missing}");
    let malformed = refused("{\"members\": [\"web-a\",");
    assert!(malformed.contains("malformed json"), "{malformed}");
    let trailing = refused(r#"{"members": ["web-a", "web-b"]} {}"#);
    assert!(trailing.contains("trailing characters"), "{trailing}");
}

#[test]
fn files_must_stay_inside_the_repo_and_patterns_must_not_be_empty() {
    let m = refused(r#"{"members": ["web-a", "web-b"], "extra_vars_files": ["../x.yml"]}"#);
    assert!(
        m.contains("extra_vars_files: `../x.yml` must be a path inside the repo"),
        "{m}"
    );
    let m = refused(r#"{"members": ["web-a", "web-b"], "verify": ["/etc/x.yml"]}"#);
    assert!(m.contains("verify: `/etc/x.yml`"), "{m}");
    let m = refused(r#"{"members": ["web-a", "web-b"], "expect": [" "]}"#);
    assert!(m.contains("expect: ` ` is an empty pattern"), "{m}");
}

#[test]
fn a_name_is_a_profile_or_a_fleet_never_both() {
    let profiles = profiles();
    let fleets = vec!["web".to_owned(), "askari".to_owned()];
    assert_eq!(
        resolve_target("web-a", &profiles, &fleets).unwrap(),
        Target::Profile
    );
    assert_eq!(
        resolve_target("web", &profiles, &fleets).unwrap(),
        Target::Fleet
    );
    let both = resolve_target("askari", &profiles, &fleets).unwrap_err();
    assert!(matches!(both, FleetError::AlsoAProfile { .. }), "{both}");
    let neither = resolve_target("nope", &profiles, &fleets)
        .unwrap_err()
        .to_string();
    assert_eq!(
        neither,
        "no profile or fleet named `nope`; profiles: web-a, web-b, web-c, askari; fleets: web, askari"
    );
}

#[test]
fn load_fleet_reads_fleets_dir_and_list_fleets_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8Path::from_path(dir.path()).unwrap();
    assert!(boma_fleet::list_fleets(root).unwrap().is_empty());
    std::fs::create_dir(root.join("fleets")).unwrap();
    std::fs::write(
        root.join("fleets/web.json"),
        r#"{"members": ["web-a", "web-b"]}"#,
    )
    .unwrap();
    std::fs::write(root.join("fleets/.hidden.json"), "{}").unwrap();
    std::fs::write(root.join("fleets/notes.txt"), "").unwrap();
    assert_eq!(boma_fleet::list_fleets(root).unwrap(), ["web"]);
    let fleet = load_fleet(root, "web", &profiles()).unwrap();
    assert_eq!(fleet.members(), ["web-a", "web-b"]);
    assert!(matches!(
        load_fleet(root, "nope", &profiles()),
        Err(FleetError::Read { .. })
    ));
    for bad in ["", ".x", "a/b"] {
        assert!(
            matches!(
                load_fleet(root, bad, &profiles()),
                Err(FleetError::BadName { .. })
            ),
            "{bad:?}"
        );
    }
}

/// The repository's own fleets load against its profiles: a fleet file this crate refuses is a
/// fleet that cannot run.
#[test]
fn repo_fleets_load() {
    let repo = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let profiles = boma_inventory::list_profiles(&repo).unwrap();
    let fleets = boma_fleet::list_fleets(&repo).unwrap();
    for name in &fleets {
        let fleet = load_fleet(&repo, name, &profiles).unwrap_or_else(|e| panic!("{e}"));
        for member in fleet.members() {
            boma_inventory::load_profile(&repo, member).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
