//! Profiles: a good one parses; every kind of mistake is refused with a message naming the file,
//! the key and the line:column.

use boma_inventory::{
    Apply, ProbeKind, Profile, ProfileError, PublishedPort, load_profile, parse_profile,
};

const GOOD: &str = r#"{
  "groups": ["offsite_hosts"],
  "applies": [
    {"playbook": "site.yml", "tags": ["base"]},
    {"playbook": "offsite.yml", "tags": ["docker_host", "reverse_proxy"]}
  ],
  "extra_vars_files": ["overrides/askari.yml"],
  "mem_mib": 3072,
  "vcpus": 2,
  "published_ports": [443]
}
"#;

const FILE: &str = "profiles/askari.json";

fn error(text: &str) -> String {
    parse_profile(FILE, text).unwrap_err().to_string()
}

#[test]
fn good_profile_parses() {
    let profile = parse_profile(FILE, GOOD).unwrap();
    assert_eq!(
        profile,
        Profile {
            groups: vec!["offsite_hosts".into()],
            applies: vec![
                Apply {
                    playbook: "site.yml".into(),
                    tags: vec!["base".into()]
                },
                Apply {
                    playbook: "offsite.yml".into(),
                    tags: vec!["docker_host".into(), "reverse_proxy".into()],
                },
            ],
            extra_vars_files: vec!["overrides/askari.yml".into()],
            mem_mib: 3072,
            vcpus: 2,
            published_ports: vec![PublishedPort {
                port: 443,
                probe: ProbeKind::Tcp,
                name: None,
                ca: None,
                server: None,
            }],
            verify: vec![],
            reboot_diff_ignore: vec![],
            expect: vec![],
            fleet_only: false,
        }
    );
}

#[test]
fn a_fleet_only_profile_says_so_and_a_typo_is_refused() {
    let only = GOOD.replacen('{', r#"{"fleet_only": true, "#, 1);
    assert!(parse_profile(FILE, &only).unwrap().fleet_only);
    let typo = GOOD.replacen('{', r#"{"fleet_member": true, "#, 1);
    assert!(matches!(
        parse_profile(FILE, &typo),
        Err(ProfileError::Invalid { .. })
    ));
    let not_a_flag = GOOD.replacen('{', r#"{"fleet_only": "yes", "#, 1);
    assert!(parse_profile(FILE, &not_a_flag).is_err());
}

#[test]
fn ports_may_say_how_they_are_probed_and_profiles_name_their_checks() {
    let text = GOOD
        .replace(
            "[443]",
            r#"[443, {"port": 8080, "probe": "http"}, {"port": 8443, "probe": "https", "name": "www.example.net"}],
  "verify": ["tests/verify/askari.yml"],
  "reboot_diff_ignore": ["unit_inactive foo*.service"],
  "expect": ["listener_lost tcp/8080 python3"]"#,
        )
        .replace(r#""offsite.yml""#, r#""tests/catalogue/x.yml""#);
    let profile = parse_profile(FILE, &text).unwrap();
    assert_eq!(profile.ports(), vec![443, 8080, 8443]);
    assert_eq!(profile.published_ports[1].probe, ProbeKind::Http);
    assert_eq!(
        profile.published_ports[2].name.as_deref(),
        Some("www.example.net")
    );
    assert_eq!(profile.verify, vec!["tests/verify/askari.yml"]);
    let with_ca = GOOD.replace(
        "[443]",
        r#"[{"port": 443, "probe": "https", "name": "status.wingu.me",
            "ca": "/srv/caddy/data/caddy/pki/authorities/local/root.crt", "server": "Caddy"},
           {"port": 80, "probe": "http", "server": "nginx/"}]"#,
    );
    let ports = parse_profile(FILE, &with_ca).unwrap().published_ports;
    assert_eq!(
        ports[0].ca.as_deref(),
        Some("/srv/caddy/data/caddy/pki/authorities/local/root.crt")
    );
    assert_eq!(ports[0].server.as_deref(), Some("Caddy"));
    assert_eq!(
        (ports[1].ca.as_deref(), ports[1].server.as_deref()),
        (None, Some("nginx/"))
    );
    assert_eq!(profile.applies[0].playbook_path(), "playbooks/site.yml");
    assert_eq!(
        profile.applies[1].label(),
        "tests/catalogue/x.yml --tags docker_host,reverse_proxy"
    );
    for (bad, expected) in [
        (
            r#"[{"port": 80, "probe": "ftp"}]"#,
            "each published port is a number or",
        ),
        (
            r#"[{"port": 80, "probe": "http", "name": "x"}]"#,
            "only for \"probe\": \"https\"",
        ),
        (
            r#"[{"port": 443, "probe": "https", "name": "a b"}]"#,
            "is not a host name",
        ),
        (r#"[{"port": 0, "probe": "tcp"}]"#, "port 0 is outside"),
        (
            r#"[{"port": 80, "probe": "http", "ca": "/ca.crt"}]"#,
            "port 80: `ca` is the CA the certificate is verified against, only for \"probe\": \"https\"",
        ),
        (
            r#"[{"port": 443, "probe": "https", "ca": "srv/ca.crt"}]"#,
            "`ca` `srv/ca.crt` must be an absolute file path in the guest",
        ),
        (
            r#"[{"port": 443, "probe": "https", "ca": "/srv/../etc/shadow"}]"#,
            "must be an absolute file path in the guest (no `..`)",
        ),
        (
            r#"[{"port": 443, "probe": "https", "ca": "/x\ny"}]"#,
            "must be an absolute file path",
        ),
        (
            r#"[{"port": 22, "probe": "tcp", "server": "OpenSSH"}]"#,
            "port 22: `server` is the HTTP `Server:` header",
        ),
        (
            r#"[{"port": 80, "probe": "http", "server": " "}]"#,
            "must be printable ascii, not empty",
        ),
    ] {
        let message = error(&GOOD.replace("[443]", bad));
        assert!(message.contains(expected), "{bad}: {message}");
    }
    let message = error(&GOOD.replace("[443]", "[443],\n  \"verify\": [\"../x.yml\"]"));
    assert!(
        message.contains("verify: `../x.yml` must be a path inside the repo"),
        "{message}"
    );
}

#[test]
fn unknown_key() {
    let text = GOOD.replace(
        r#""vcpus": 2,"#,
        r#""vcpus": 2,
  "cpus": 4,"#,
    );
    insta::assert_snapshot!("profile_unknown_key", error(&text));
}

#[test]
fn unknown_key_nested() {
    let text = GOOD.replace(r#""tags": ["base"]"#, r#""tag": ["base"]"#);
    insta::assert_snapshot!("profile_unknown_key_nested", error(&text));
}

#[test]
fn missing_key() {
    let text = GOOD.replace("  \"vcpus\": 2,\n", "");
    insta::assert_snapshot!("profile_missing_key", error(&text));
}

#[test]
fn missing_key_nested() {
    let text = GOOD.replace(r#", "tags": ["base"]"#, "");
    insta::assert_snapshot!("profile_missing_key_nested", error(&text));
}

#[test]
fn bad_value() {
    let text = GOOD.replace("3072", "256");
    insta::assert_snapshot!("profile_bad_value", error(&text));
}

#[test]
fn bad_value_type() {
    let text = GOOD.replace("3072", "\"3 GiB\"");
    insta::assert_snapshot!("profile_bad_value_type", error(&text));
}

#[test]
fn malformed_json() {
    let text = GOOD.replace(r#""vcpus": 2,"#, r#""vcpus": 2"#);
    insta::assert_snapshot!("profile_malformed_json", error(&text));
}

#[test]
fn trailing_text_is_malformed() {
    let err = parse_profile(FILE, &format!("{GOOD}}}")).unwrap_err();
    assert!(matches!(err, ProfileError::Malformed { .. }), "{err}");
}

#[test]
fn every_value_rule_is_enforced() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"["offsite_hosts"]"#,
            "[]",
            "groups: must name at least one group",
        ),
        (
            r#"["offsite_hosts"]"#,
            r#"["a", "a"]"#,
            "groups: duplicate group `a`",
        ),
        (
            r#"["offsite_hosts"]"#,
            r#"["web-hosts"]"#,
            "is not a valid ansible group name",
        ),
        (r#"["offsite_hosts"]"#, r#"["all"]"#, "implicit in ansible"),
        ("3072", "511", "less than the minimum of 512"),
        ("\"vcpus\": 2", "\"vcpus\": 0", "0 vcpus is outside 1..=64"),
        (
            "\"vcpus\": 2",
            "\"vcpus\": 65",
            "65 vcpus is outside 1..=64",
        ),
        ("[443]", "[0]", "port 0 is outside 1..=65535"),
        ("[443]", "[65536]", "port 65536 is outside 1..=65535"),
        ("[443]", "[-1]", "published_ports"),
        ("[443]", "[443, 80, 443]", "duplicate port `443`"),
        (
            r#""site.yml""#,
            r#""../site.yml""#,
            "applies[0].playbook: playbook `../site.yml`",
        ),
        (r#""site.yml""#, r#""/etc/site.yml""#, "not absolute"),
        (r#""site.yml""#, r#""site.txt""#, "ending in .yml"),
        (r#""site.yml""#, r#""""#, "must be a file name"),
        (
            r#"["base"]"#,
            r#"["base", "base"]"#,
            "applies[0].tags: duplicate tag `base`",
        ),
        (r#"["base"]"#, r#"["a,b"]"#, "tag `a,b`"),
        (r#"["base"]"#, r#"[""]"#, "must be non-empty"),
        (
            r#""overrides/askari.yml""#,
            r#""../x.yml""#,
            "extra_vars_files: extra vars file `../x.yml`",
        ),
        (
            r#""overrides/askari.yml""#,
            r#""/etc/x.yml""#,
            "not absolute",
        ),
        (
            r#""overrides/askari.yml""#,
            r#""a.yml", "a.yml""#,
            "duplicate extra vars file `a.yml`",
        ),
    ];
    for (from, to, expected) in cases {
        assert!(GOOD.contains(from), "{from}");
        let message = error(&GOOD.replacen(from, to, 1));
        assert!(message.starts_with("profiles/askari.json:"), "{message}");
        assert!(
            message.contains(expected),
            "{to}: expected `{expected}` in: {message}"
        );
    }
    let no_applies = GOOD.replace(
        &GOOD[GOOD.find("[\n    {").unwrap()..=GOOD.find("}\n  ]").unwrap() + 4],
        "[]",
    );
    assert!(error(&no_applies).contains("applies: must list at least one playbook run"));
}

#[test]
fn empty_tags_and_no_extra_files_or_ports_are_allowed() {
    let text = GOOD
        .replace(r#"["base"]"#, "[]")
        .replace(r#"["overrides/askari.yml"]"#, "[]")
        .replace("[443]", "[]");
    let profile = parse_profile(FILE, &text).unwrap();
    assert!(profile.applies[0].tags.is_empty());
}

#[test]
fn missing_file_lists_existing_profiles() {
    let repo = tempfile::tempdir().unwrap();
    let root = camino::Utf8Path::from_path(repo.path()).unwrap();
    std::fs::create_dir(root.join("profiles")).unwrap();
    for name in ["kiboko.json", "askari.json", "README.md", ".hidden.json"] {
        std::fs::write(root.join("profiles").join(name), GOOD).unwrap();
    }
    assert_eq!(load_profile(root, "askari").unwrap().vcpus, 2);
    let err = load_profile(root, "simba").unwrap_err();
    insta::assert_snapshot!("profile_missing_file", err.to_string());

    let empty = tempfile::tempdir().unwrap();
    let err =
        load_profile(camino::Utf8Path::from_path(empty.path()).unwrap(), "simba").unwrap_err();
    assert!(
        err.to_string()
            .ends_with("there are no profiles in profiles/"),
        "{err}"
    );
}

#[test]
fn host_names_that_would_escape_profiles_dir_are_refused() {
    let repo = tempfile::tempdir().unwrap();
    let root = camino::Utf8Path::from_path(repo.path()).unwrap();
    for host in ["", "../secrets", "a/b", ".hidden"] {
        assert!(
            matches!(load_profile(root, host), Err(ProfileError::BadHost { .. })),
            "{host}"
        );
    }
}

/// The repo's own profiles must parse: a profile this crate refuses is a harness that cannot run.
#[test]
fn repo_profiles_parse() {
    let repo = camino::Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for host in boma_inventory::list_profiles(&repo).unwrap() {
        load_profile(&repo, &host).unwrap_or_else(|e| panic!("{e}"));
    }
}
