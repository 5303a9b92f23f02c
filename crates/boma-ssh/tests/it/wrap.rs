//! `wrap` on Ansible's real command lines (captured from ansible-core 2.18's ssh plugin, hostile
//! `ansible_ssh_common_args` and `ansible_ssh_extra_args` included) and on random ones: the
//! output always opens with the pinned options, keeps nothing of Ansible's options but the
//! allowed flags, and ends with `--`, the VM's alias and the command unchanged.

use crate::support::*;

use boma_ssh::{FLAGS, Table, VALUE_OPTIONS, pinned_options, wrap};
use proptest::prelude::*;

const FIXTURE: &str = include_str!("../fixtures/ansible-core-2.18-ssh-argv.jsonl");

/// The flags `wrap` may keep between the pinned options and `--`.
fn allowed(kept: &[String]) -> bool {
    let mut at = 0;
    while at < kept.len() {
        match kept[at].as_str() {
            "-q" | "-v" | "-vv" | "-vvv" | "-t" | "-tt" | "-T" => at += 1,
            "-O" if matches!(
                kept.get(at + 1).map(String::as_str),
                Some("check" | "stop" | "exit")
            ) =>
            {
                at += 2
            }
            _ => return false,
        }
    }
    true
}

/// Output = pinned options, allowed flags, `--`, the alias, `command`.
fn check_shape(table: &Table, out: &[String], command: &[String]) {
    let endpoint = table.endpoint_for(VM).unwrap();
    let pinned = pinned_options(endpoint);
    assert_eq!(out[..pinned.len()], pinned[..], "{out:?}");
    let rest = &out[pinned.len()..];
    let dashdash = rest
        .iter()
        .position(|a| a == "--")
        .expect("`--` before the alias");
    assert!(allowed(&rest[..dashdash]), "kept {:?}", &rest[..dashdash]);
    assert_eq!(rest[dashdash + 1], VM);
    assert_eq!(&rest[dashdash + 2..], command);
}

#[test]
fn ansibles_captured_command_lines_are_rebuilt_around_the_pinned_options() {
    let table = table();
    let mut lines = 0;
    for line in FIXTURE.lines() {
        let argv: Vec<String> = serde_json::from_str(line).unwrap();
        let out = wrap(&table, &argv).unwrap();
        // The captured command is what follows the destination (none for `-O check`).
        let at = argv.iter().position(|a| a == "127.0.0.1").unwrap();
        check_shape(&table, &out, &argv[at + 1..]);
        for hostile in ["127.0.0.3", "2299", "/tmp/evil", "id_rsa", "jump@", "8080:"] {
            assert!(
                !out.iter().any(|a| a.contains(hostile)),
                "{hostile} survived: {out:?}"
            );
        }
        lines += 1;
    }
    assert_eq!(lines, 13);
}

#[test]
fn a_destination_outside_the_table_is_refused_naming_the_runs_vms() {
    let table = table();
    for destination in [
        "77.42.120.136",
        "root@77.42.120.136",
        "ssh://root@77.42.120.136:22",
        "askari",
        "127.0.0.2",
    ] {
        let argv = vec![
            "-o".to_owned(),
            "Port=22".to_owned(),
            destination.to_owned(),
        ];
        assert_eq!(
            wrap(&table, &argv).unwrap_err().to_string(),
            format!("refusing ssh to {destination}: not a vm of this run ({VM})")
        );
    }
    // The alias and the address, in any of ssh's destination forms, are the VM.
    for destination in [VM, "127.0.0.1", "root@127.0.0.1", "ssh://x@127.0.0.1:2222"] {
        let out = wrap(&table, &[destination.to_owned(), "id".to_owned()]).unwrap();
        check_shape(&table, &out, &["id".to_owned()]);
    }
}

/// One option as Ansible (or a hostile variable) could write it.
#[derive(Debug, Clone)]
enum Token {
    Flag(char),
    /// `-x value`.
    Separate(char, String),
    /// `-xvalue`.
    Attached(char, String),
    /// `-tq`, flags run together.
    Cluster(String),
}

impl Token {
    fn argv(&self) -> Vec<String> {
        match self {
            Token::Flag(c) => vec![format!("-{c}")],
            Token::Separate(c, v) => vec![format!("-{c}"), v.clone()],
            Token::Attached(c, v) => vec![format!("-{c}{v}")],
            Token::Cluster(flags) => vec![format!("-{flags}")],
        }
    }
}

fn value_for(option: char) -> BoxedStrategy<String> {
    if option == 'O' {
        prop::sample::select(vec!["check", "stop", "exit"])
            .prop_map(str::to_owned)
            .boxed()
    } else {
        prop_oneof![
            Just("HostName=127.0.0.3".to_owned()),
            Just("ProxyCommand=sh -c 'nc 127.0.0.3 22'".to_owned()),
            Just("/root/.ssh/id_rsa".to_owned()),
            Just("jump@127.0.0.4".to_owned()),
            "[a-zA-Z0-9=:@/._ -]{0,16}",
        ]
        .boxed()
    }
}

fn token() -> impl Strategy<Value = Token> {
    let flags: Vec<char> = FLAGS.chars().collect();
    let values: Vec<char> = VALUE_OPTIONS.chars().collect();
    prop_oneof![
        prop::sample::select(flags.clone()).prop_map(Token::Flag),
        prop::sample::select(values.clone())
            .prop_flat_map(|c| value_for(c).prop_map(move |v| Token::Separate(c, v))),
        prop::sample::select(values)
            .prop_flat_map(|c| value_for(c).prop_map(move |v| Token::Attached(c, v)))
            .prop_filter("attached values are not empty", |t| match t {
                Token::Attached(_, v) => !v.is_empty(),
                _ => true,
            }),
        prop::collection::vec(prop::sample::select(flags), 2..5)
            .prop_map(|cs| Token::Cluster(cs.into_iter().collect())),
    ]
}

fn destination() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(VM.to_owned()),
        Just("127.0.0.1".to_owned()),
        Just("root@127.0.0.1".to_owned()),
        Just(format!("ssh://ansible@{VM}:22")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever options come before and after the destination, and whatever the command: the
    /// pinned options first, only allowed flags, then `--`, the alias and the command.
    #[test]
    fn the_output_opens_with_the_pinned_options_and_keeps_only_allowed_flags(
        before in prop::collection::vec(token(), 0..8),
        after in prop::collection::vec(token(), 0..4),
        destination in destination(),
        command in prop::collection::vec("[a-z][a-z0-9 '|;&-]{0,12}", 0..3),
    ) {
        let mut argv: Vec<String> = before.iter().flat_map(Token::argv).collect();
        argv.push(destination);
        argv.extend(after.iter().flat_map(Token::argv));
        argv.extend(command.iter().cloned());
        let table = table();
        match wrap(&table, &argv) {
            Ok(out) => check_shape(&table, &out, &command),
            Err(refusal) => prop_assert!(false, "{refusal} for {argv:?}"),
        }
    }

    /// Any destination that is not the VM is refused, whatever surrounds it.
    #[test]
    fn no_other_destination_gets_through(
        before in prop::collection::vec(token(), 0..6),
        host in "[a-z0-9.-]{1,12}",
    ) {
        prop_assume!(host != "127.0.0.1" && host != VM);
        let mut argv: Vec<String> = before.iter().flat_map(Token::argv).collect();
        argv.push(host);
        argv.push("id".to_owned());
        prop_assert!(wrap(&table(), &argv).is_err());
    }
}
