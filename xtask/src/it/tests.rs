//! `it`'s decisions: which hosts, what a child is told, and the outcome.

use clap::Parser as _;

use super::*;

/// `cargo xtask it <args>` as clap reads it.
fn it_args(args: &[&str]) -> ItArgs {
    let cli = crate::Cli::try_parse_from(["cargo xtask", "it"].iter().chain(args)).unwrap();
    match cli.command {
        crate::Command::It(args) => args,
        other => panic!("not it: {other:?}"),
    }
}

fn repo() -> &'static Utf8Path {
    Utf8Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The profiles `it` would run for `args` in this repository.
fn profiles(args: &[&str]) -> Vec<String> {
    select(repo(), &it_args(args)).unwrap().profiles
}

#[test]
fn a_host_named_twice_runs_once() {
    assert_eq!(profiles(&["askari", "askari"]), ["askari"]);
    assert_eq!(
        profiles(&["ubongo", "askari", "ubongo"]),
        ["ubongo", "askari"]
    );
}

#[test]
fn all_takes_the_red_profiles_too_and_a_named_one_once() {
    let hosts = profiles(&["askari", "--all"]);
    assert!(hosts.contains(&"askari-red".to_owned()), "{hosts:?}");
    assert!(hosts.contains(&"ubongo".to_owned()), "{hosts:?}");
    assert_eq!(hosts.iter().filter(|h| *h == "askari").count(), 1);
}

/// `--all` runs every profile but the fleet members, which run in their fleets, and every
/// fleet.
#[test]
fn all_leaves_the_fleet_only_profiles_to_their_fleets() {
    let selection = select(repo(), &it_args(&["--all"])).unwrap();
    let every = boma_inventory::list_profiles(repo()).unwrap();
    let fleet_only: Vec<&String> = every
        .iter()
        .filter(|p| boma_inventory::load_profile(repo(), p).unwrap().fleet_only)
        .collect();
    assert!(
        fleet_only.contains(&&"catf-boot-order-a".to_owned()),
        "{fleet_only:?}"
    );
    for profile in &every {
        assert_eq!(
            selection.profiles.contains(profile),
            !fleet_only.contains(&profile),
            "{profile}"
        );
    }
    assert_eq!(selection.fleets, boma_fleet::list_fleets(repo()).unwrap());
    assert!(selection.fleets.contains(&"catf-boot-order-red".to_owned()));
}

/// A fleet named runs as a fleet beside the profiles named; the shard slices both together.
#[test]
fn a_named_fleet_runs_as_a_fleet_and_shards_with_the_profiles() {
    let selection = select(repo(), &it_args(&["askari", "catf-boot-order", "askari"])).unwrap();
    assert_eq!(selection.profiles, ["askari"]);
    assert_eq!(selection.fleets, ["catf-boot-order"]);
    assert_eq!(selection.names(), ["askari", "catf-boot-order"]);
    let first = select(
        repo(),
        &it_args(&["askari", "catf-boot-order", "--shard", "1/2"]),
    )
    .unwrap();
    let second = select(
        repo(),
        &it_args(&["askari", "catf-boot-order", "--shard", "2/2"]),
    )
    .unwrap();
    let mut both = first.names();
    both.extend(second.names());
    both.sort();
    assert_eq!(both, ["askari", "catf-boot-order"], "each run in one slice");
}

/// A fleet is charged all its members: they run at once.
#[test]
fn a_fleet_is_charged_every_member() {
    let settings = boma_harness::Settings {
        repo: repo().to_owned(),
        ..test_settings()
    };
    let a = charge(&settings, "catf-peer-admit-a");
    let b = charge(&settings, "catf-peer-admit-b");
    let fleet = fleet_charge(&settings, "catf-peer-admit");
    assert_eq!(fleet.mem_mib, a.mem_mib + b.mem_mib);
    assert_eq!(fleet.vcpus, 2);
    assert_eq!(
        a.mem_mib,
        boma_host::judge::vm_charge_mib(768),
        "768 MiB and QEMU's overhead"
    );
}

/// Settings for a test that reads only the repository.
fn test_settings() -> boma_harness::Settings {
    let repo = repo().to_owned();
    boma_harness::Settings {
        runs_root: boma_harness::Settings::default_runs_root(&repo),
        cache_dir: "/nonexistent/cache".into(),
        state_dir: "/nonexistent/state".into(),
        diagnostics_root: "/nonexistent/diagnostics".into(),
        backend: boma_harness::BackendChoice::Auto,
        image: boma_harness::ImageSource::Auto,
        image_url: None,
        sums_url: None,
        vault_password_file: None,
        waits: boma_harness::WaitOverrides::default(),
        step_timeout: None,
        verbose: false,
        layers: false,
        repo,
    }
}

#[test]
fn a_fleet_only_profile_alone_is_refused_naming_its_fleets() {
    let err = select(repo(), &it_args(&["catf-peer-mount-b"])).unwrap_err();
    assert_eq!(err.outcome(), Outcome::Refused, "{err:?}");
    let text = format!("{err:?}");
    assert!(
        text.contains("runs only as a fleet member")
            && text.contains("catf-peer-mount, catf-peer-mount-red"),
        "{text}"
    );
}

/// Every fleet-only profile has a fleet to run in.
#[test]
fn every_fleet_only_profile_is_a_member_of_a_fleet() {
    let catalogue = catalogue(repo(), &[], true).unwrap();
    for profile in &catalogue.fleet_only {
        assert!(
            catalogue
                .fleets
                .iter()
                .any(|(_, members)| members.contains(profile)),
            "{profile} is fleet_only, and no fleet names it"
        );
    }
}

#[test]
fn a_name_is_a_profile_a_fleet_or_the_harnesss_to_refuse() {
    let names = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let catalogue = Catalogue {
        profiles: names(&["web-a", "web-b", "both", "db"]),
        fleet_only: names(&["web-a", "web-b"]),
        red: Vec::new(),
        fleets: vec![
            ("web".to_owned(), names(&["web-a", "web-b"])),
            ("both".to_owned(), names(&["web-a", "db"])),
        ],
    };
    let err = decide(&names(&["both"]), false, &catalogue).unwrap_err();
    assert!(err.contains("is both a profile"), "{err}");
    // Unknown: the harness refuses it in its report, naming the profiles.
    assert_eq!(
        decide(&names(&["nope"]), false, &catalogue)
            .unwrap()
            .profiles,
        ["nope"]
    );
    let err = decide(&names(&["web-a"]), false, &catalogue).unwrap_err();
    assert!(err.ends_with("(web, both)"), "{err}");
    let all = decide(&[], true, &catalogue).unwrap();
    assert_eq!(all.profiles, ["both", "db"]);
    assert_eq!(all.fleets, ["web", "both"]);
    let catalogue = Catalogue {
        profiles: names(&["web-a", "web-b", "db"]),
        fleets: vec![("web".to_owned(), names(&["web-a", "web-b"]))],
        ..catalogue
    };
    let named = decide(&names(&["web", "db"]), false, &catalogue).unwrap();
    assert_eq!(
        (named.profiles, named.fleets),
        (names(&["db"]), names(&["web"]))
    );
    // A fleet named and `--all`: once.
    let all = decide(&names(&["web"]), true, &catalogue).unwrap();
    assert_eq!(all.fleets, ["web"]);
}

#[test]
fn nothing_selected_is_refused() {
    let err = select(repo(), &it_args(&[])).unwrap_err();
    assert_eq!(err.outcome(), Outcome::Refused, "{err:?}");
}

#[test]
fn a_child_is_told_the_same_options_its_host_its_report_and_its_run_id() {
    let parent = it_args(&[
        "askari",
        "ubongo",
        "-j",
        "2",
        "--certs",
        "le-staging",
        "--no-reboot",
        "--fresh",
        "--remove-failed",
        "--image",
        "/x.qcow2",
        "--backend",
        "qemu",
        "--vault-password-file",
        "/v",
    ]);
    let id: RunId = "0a1b2c3d".parse().unwrap();
    let told = child_args("ubongo", &parent, Utf8Path::new("/r/ubongo.json"), Some(id));
    let told: Vec<&str> = told.iter().map(String::as_str).collect();
    let child = it_args(&told[1..]);
    assert_eq!(told[0], "it");
    assert_eq!(child.hosts, ["ubongo"]);
    assert_eq!(child.run_id, Some(id));
    assert_eq!(
        child.report.as_deref(),
        Some(Utf8Path::new("/r/ubongo.json"))
    );
    assert_eq!(child.jobs, 1, "a child runs its one host");
    assert_eq!(child.certs.tier, parent.certs.tier);
    assert_eq!(child.image.image, parent.image.image);
    assert_eq!(child.backend.backend, parent.backend.backend);
    assert_eq!(
        child.vault.vault_password_file,
        parent.vault.vault_password_file
    );
    assert_eq!(
        (
            child.no_reboot,
            child.fresh,
            child.remove_failed,
            child.keep
        ),
        (true, true, true, false)
    );
}

#[test]
fn run_ids_are_eight_hex_digits() {
    assert!(
        it_args(&["askari", "--run-id", "0a1b2c3d"])
            .run_id
            .is_some()
    );
    for bad in ["0A1B2C3D", "0a1b2c3", "0a1b2c3d9", "../../x", "zzzzzzzz"] {
        let parsed = crate::Cli::try_parse_from(["cargo xtask", "it", "askari", "--run-id", bad]);
        assert!(parsed.is_err(), "{bad}");
    }
}

#[test]
fn this_processs_interrupt_wins_over_any_result() {
    let sigint = Interrupted { signal: 2 };
    for worst in [
        RunResult::Passed,
        RunResult::Failed,
        RunResult::Refused,
        RunResult::Error,
        RunResult::Interrupted,
    ] {
        assert_eq!(
            verdict(worst, Some(sigint), true),
            Outcome::Interrupted(sigint)
        );
    }
}

#[test]
fn without_an_interrupt_the_worst_run_decides() {
    assert_eq!(verdict(RunResult::Passed, None, true), Outcome::Passed);
    // A RED whose failures were exactly its `expect`.
    assert_eq!(
        verdict(RunResult::ExpectedFailure, None, true),
        Outcome::Passed
    );
    assert_eq!(verdict(RunResult::Failed, None, true), Outcome::Failed);
    assert_eq!(verdict(RunResult::Error, None, true), Outcome::Failed);
    assert_eq!(verdict(RunResult::Refused, None, true), Outcome::Refused);
    // A child interrupted on its own: no pass, and this process was not interrupted.
    assert_eq!(verdict(RunResult::Interrupted, None, true), Outcome::Failed);
}

#[test]
fn a_report_file_that_could_not_be_written_fails_a_pass_but_not_a_refusal() {
    assert_eq!(verdict(RunResult::Passed, None, false), Outcome::Failed);
    assert_eq!(verdict(RunResult::Refused, None, false), Outcome::Refused);
}

#[test]
fn each_child_of_a_parallel_run_keeps_a_failed_vm_powered_off() {
    use clap::Parser as _;
    let it = |argv: Vec<String>| match crate::Cli::try_parse_from(argv).unwrap().command {
        crate::Command::It(args) => args,
        other => panic!("{other:?}"),
    };
    let argv = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
    let parent = it(argv(&["cargo xtask", "it", "askari", "ubongo"]));
    assert!(!parent.power_off_failed, "an operator does not pass it");
    let mut child = argv(&["cargo xtask"]);
    child.extend(child_args(
        "askari",
        &parent,
        Utf8Path::new("/r/askari.json"),
        None,
    ));
    let child = it(child);
    assert_eq!(child.hosts, ["askari"]);
    assert!(child.power_off_failed);
}
