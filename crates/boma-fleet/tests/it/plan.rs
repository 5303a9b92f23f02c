//! The fleet's steps and `-e` files, merged from the members' profiles; the reboot rounds.

use boma_fleet::{
    Boot, Fleet, Phase, Round, StepOrderError, extra_vars_files, merge_steps, parse_fleet, rounds,
};
use boma_inventory::{Profile, parse_profile};
use camino::Utf8PathBuf;

/// A profile applying `steps` (`playbook` or `playbook:tag1,tag2`) with `files` as `-e`.
fn profile(steps: &[&str], files: &[&str]) -> Profile {
    let applies: Vec<String> = steps
        .iter()
        .map(|step| {
            let (playbook, tags) = step.split_once(':').unwrap_or((step, ""));
            let tags: Vec<String> = tags
                .split(',')
                .filter(|t| !t.is_empty())
                .map(|t| format!("{t:?}"))
                .collect();
            format!(
                r#"{{"playbook": {playbook:?}, "tags": [{}]}}"#,
                tags.join(", ")
            )
        })
        .collect();
    let files: Vec<String> = files.iter().map(|f| format!("{f:?}")).collect();
    parse_profile(
        "profiles/test.json",
        &format!(
            r#"{{"groups": ["g"], "applies": [{}], "extra_vars_files": [{}], "mem_mib": 768, "vcpus": 1, "published_ports": []}}"#,
            applies.join(", "),
            files.join(", ")
        ),
    )
    .unwrap()
}

/// `label limit,limit` per step.
fn merged(members: &[(&str, &Profile)]) -> Vec<String> {
    merge_steps(members)
        .unwrap()
        .iter()
        .map(|s| format!("{} [{}]", s.apply.label(), s.limit.join(",")))
        .collect()
}

#[test]
fn identical_steps_become_one_run_limited_to_the_members_that_list_them() {
    let a = profile(&["site.yml:base", "site.yml:docker_host"], &[]);
    let b = profile(&["site.yml:base", "offsite.yml"], &[]);
    assert_eq!(
        merged(&[("a", &a), ("b", &b)]),
        [
            "playbooks/site.yml --tags base [a,b]",
            "playbooks/site.yml --tags docker_host [a]",
            "playbooks/offsite.yml [b]",
        ]
    );
}

#[test]
fn a_playbook_by_name_or_path_and_tags_in_any_order_are_the_same_step() {
    let a = profile(&["site.yml:base,ssh"], &[]);
    let b = profile(&["playbooks/site.yml:ssh,base"], &[]);
    let steps = merge_steps(&[("a", &a), ("b", &b)]).unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].limit, ["a", "b"]);
    // The first member's spelling is the step's.
    assert_eq!(steps[0].apply.label(), "playbooks/site.yml --tags base,ssh");
}

#[test]
fn the_same_playbook_with_other_tags_is_another_step() {
    let a = profile(&["site.yml:base"], &[]);
    let b = profile(&["site.yml"], &[]);
    assert_eq!(
        merged(&[("a", &a), ("b", &b)]),
        [
            "playbooks/site.yml --tags base [a]",
            "playbooks/site.yml [b]"
        ]
    );
}

/// First appearance alone would run `s1` before `s3`, which `b` orders the other way.
#[test]
fn every_member_keeps_its_own_order_where_first_appearance_would_break_it() {
    let a = profile(&["s1.yml", "s2.yml"], &[]);
    let b = profile(&["s3.yml", "s1.yml"], &[]);
    assert_eq!(
        merged(&[("a", &a), ("b", &b)]),
        [
            "playbooks/s3.yml [b]",
            "playbooks/s1.yml [a,b]",
            "playbooks/s2.yml [a]"
        ]
    );
}

#[test]
fn members_ordering_shared_steps_differently_are_refused() {
    let a = profile(&["s1.yml", "s2.yml"], &[]);
    let b = profile(&["s2.yml", "s3.yml", "s1.yml"], &[]);
    let err = merge_steps(&[("a", &a), ("b", &b)]).unwrap_err();
    assert_eq!(
        err,
        StepOrderError::Conflict {
            first_member: "a".into(),
            second_member: "b".into(),
            earlier: "playbooks/s1.yml".into(),
            later: "playbooks/s2.yml".into(),
        }
    );
    assert_eq!(
        err.to_string(),
        "members `a` and `b` order their shared steps differently: `a` applies `playbooks/s1.yml` before `playbooks/s2.yml`, `b` after it; one playbook run per step over the fleet needs one order: reorder one profile's applies"
    );
}

/// No two members disagree, yet the three orders cannot all hold.
#[test]
fn a_cycle_through_three_members_is_refused() {
    let a = profile(&["s1.yml", "s2.yml"], &[]);
    let b = profile(&["s2.yml", "s3.yml"], &[]);
    let c = profile(&["s3.yml", "s1.yml"], &[]);
    let err = merge_steps(&[("a", &a), ("b", &b), ("c", &c)]).unwrap_err();
    assert_eq!(
        err,
        StepOrderError::Cycle {
            steps: vec![
                "playbooks/s1.yml".into(),
                "playbooks/s2.yml".into(),
                "playbooks/s3.yml".into()
            ]
        }
    );
}

#[test]
fn a_member_applying_one_step_twice_is_refused() {
    let a = profile(&["s1.yml", "s2.yml", "s1.yml"], &[]);
    let b = profile(&["s1.yml"], &[]);
    assert_eq!(
        merge_steps(&[("a", &a), ("b", &b)]).unwrap_err(),
        StepOrderError::Repeated {
            member: "a".into(),
            step: "playbooks/s1.yml".into()
        }
    );
}

#[test]
fn extra_vars_files_are_the_members_then_the_fleets_each_once() {
    let a = profile(&["s.yml"], &["overrides/a.yml", "overrides/catalogue.yml"]);
    let b = profile(&["s.yml"], &["overrides/b.yml", "overrides/catalogue.yml"]);
    let fleet = [
        Utf8PathBuf::from("overrides/red.yml"),
        Utf8PathBuf::from("overrides/a.yml"),
    ];
    assert_eq!(
        extra_vars_files(&[&a, &b], &fleet),
        [
            "overrides/a.yml",
            "overrides/catalogue.yml",
            "overrides/b.yml",
            "overrides/red.yml"
        ]
        .map(Utf8PathBuf::from)
    );
}

fn fleet(text: &str) -> Fleet {
    let profiles: Vec<String> = ["a", "b", "c"].iter().map(|s| (*s).to_owned()).collect();
    Fleet::check("f", parse_fleet("fleets/f.json", text).unwrap(), &profiles).unwrap()
}

#[test]
fn rolling_is_a_round_per_member_then_together_once() {
    let rounds = rounds(&fleet(r#"{"members": ["a", "b", "c"]}"#));
    let names: Vec<String> = rounds.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["rolling a", "rolling b", "rolling c", "together"]);
    assert!(rounds[1].reboots("b") && !rounds[1].reboots("a"));
    assert!(["a", "b", "c"].iter().all(|m| rounds[3].reboots(m)));
}

#[test]
fn rounds_follow_the_files_order_and_the_boot_order() {
    let rounds = rounds(&fleet(
        r#"{"members": ["a", "b"], "reboots": ["together", "rolling"], "boot_order": ["b", "a"]}"#,
    ));
    assert_eq!(
        rounds[0],
        Round::Together {
            boot: Boot::InOrder(vec!["b".into(), "a".into()])
        }
    );
    let phases: Vec<String> = std::iter::once(Phase::Applied)
        .chain(rounds.into_iter().map(Phase::After))
        .map(|p| p.to_string())
        .collect();
    assert_eq!(
        phases,
        [
            "after apply",
            "after together (boot order b, a)",
            "after rolling a",
            "after rolling b"
        ]
    );
}

#[test]
fn together_alone_boots_everyone_at_once_without_a_boot_order() {
    assert_eq!(
        rounds(&fleet(
            r#"{"members": ["a", "b"], "reboots": ["together"]}"#
        )),
        [Round::Together {
            boot: Boot::AllAtOnce
        }]
    );
}
