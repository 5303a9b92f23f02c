//! Peer probes: the plan, the script (a snapshot, and a real run against loopback stand-ins
//! for a member's peers), and the parser of its answer (on that real answer, committed).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use boma_exec::CmdExt as _;
use boma_fleet::probe::{parse_output, plan, render_script};
use boma_fleet::{PROBE_TIMING, PeerProbe, PeerTarget, ProbeTiming};
use boma_inventory::{ProbeKind, PublishedPort};
use xshell::{Shell, cmd};

fn port(port: u16, probe: ProbeKind, name: Option<&str>) -> PublishedPort {
    PublishedPort {
        port,
        probe,
        name: name.map(str::to_owned),
        ca: None,
        server: None,
    }
}

#[test]
fn every_member_probes_every_other_members_ports() {
    let a_ports = [port(8080, ProbeKind::Http, None)];
    let b_ports = [
        PublishedPort {
            server: Some("Caddy".into()),
            ..port(443, ProbeKind::Https, Some("www.example"))
        },
        port(22, ProbeKind::Tcp, None),
    ];
    let members = [
        PeerTarget {
            name: "a",
            address: Ipv4Addr::new(10, 231, 0, 10),
            ports: &a_ports,
        },
        PeerTarget {
            name: "b",
            address: Ipv4Addr::new(10, 231, 0, 11),
            ports: &b_ports,
        },
        PeerTarget {
            name: "c",
            address: Ipv4Addr::new(10, 231, 0, 12),
            ports: &[],
        },
    ];
    let probes = plan(&members);
    // What the answer must say travels with the probe.
    assert_eq!(probes[0].server.as_deref(), Some("Caddy"));
    assert_eq!(probes[1].server, None);
    let labels: Vec<String> = probes
        .iter()
        .map(|p| format!("{} {} {}", p.label(), p.address, p.kind))
        .collect();
    assert_eq!(
        labels,
        [
            "a → b:443 10.231.0.11 https",
            "a → b:22 10.231.0.11 tcp",
            "b → a:8080 10.231.0.10 http",
            "c → a:8080 10.231.0.10 http",
            "c → b:443 10.231.0.11 https",
            "c → b:22 10.231.0.11 tcp",
        ]
    );
}

fn probe(to: &str, address: Ipv4Addr, port: u16, kind: ProbeKind, name: Option<&str>) -> PeerProbe {
    PeerProbe {
        from: "a".into(),
        to: to.into(),
        address,
        port,
        kind,
        name: name.map(str::to_owned),
        server: None,
    }
}

fn expecting(server: &str, probe: PeerProbe) -> PeerProbe {
    PeerProbe {
        server: Some(server.into()),
        ..probe
    }
}

#[test]
fn peer_probe_script_snapshot() {
    let probes = [
        expecting(
            "Caddy",
            probe(
                "b",
                Ipv4Addr::new(10, 231, 0, 11),
                443,
                ProbeKind::Https,
                Some("www.example"),
            ),
        ),
        probe("b", Ipv4Addr::new(10, 231, 0, 11), 22, ProbeKind::Tcp, None),
        probe(
            "c",
            Ipv4Addr::new(10, 231, 0, 12),
            8080,
            ProbeKind::Http,
            None,
        ),
    ];
    let script = render_script(&probes, PROBE_TIMING);
    assert!(script.ends_with("BOMA_PEER_PROBE\n"), "{script}");
    insta::assert_snapshot!("peer_probe_script", script);
}

/// Serves one canned answer to every connection, after reading what the client sent (or
/// nothing, when `answer` is empty: the silent server).
fn serve(listener: TcpListener, answer: &'static [u8], close_at_once: bool) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            if close_at_once {
                drop(stream);
                continue;
            }
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                let _ = stream.read(&mut buf);
                if answer.is_empty() {
                    std::thread::sleep(Duration::from_secs(5));
                } else {
                    let _ = stream.write_all(answer);
                }
            });
        }
    });
}

fn listen(host: &str) -> (TcpListener, u16) {
    let listener = TcpListener::bind((host, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// The script run for real, with `sh -s` as the harness runs it on a member, against loopback
/// stand-ins: 127.0.0.2 plays a peer with a TCP service, an HTTP server, a server that closes
/// at once and one that never answers; 127.0.0.3 a peer where nothing listens.
#[test]
fn the_script_probes_real_sockets_and_names_each_outcome() {
    let peer = Ipv4Addr::new(127, 0, 0, 2);
    let nothing = Ipv4Addr::new(127, 0, 0, 3);
    let (tcp, tcp_port) = listen("127.0.0.2");
    serve(tcp, b"SSH-2.0-stand-in\r\n", false);
    let (http, http_port) = listen("127.0.0.2");
    serve(
        http,
        b"HTTP/1.1 204 No Content\r\nServer: stand-in/1.0\r\nConnection: close\r\n\r\n",
        false,
    );
    let (closer, closer_port) = listen("127.0.0.2");
    serve(closer, b"", true);
    let (silent, silent_port) = listen("127.0.0.2");
    serve(silent, b"", false);
    let refused_port = listen("127.0.0.3").1; // dropped: nothing listens there now

    let probes = [
        probe("b", peer, tcp_port, ProbeKind::Tcp, None),
        probe("b", peer, http_port, ProbeKind::Http, Some("www.example")),
        probe("b", peer, http_port, ProbeKind::Https, Some("www.example")),
        probe("b", peer, closer_port, ProbeKind::Http, None),
        probe("b", peer, silent_port, ProbeKind::Http, None),
        probe("c", nothing, refused_port, ProbeKind::Tcp, None),
        expecting(
            "stand-in",
            probe("b", peer, http_port, ProbeKind::Http, None),
        ),
        // A profile's `server` is free text: a quote cannot end the script's string.
        expecting(
            "Caddy '''\" \\",
            probe("b", peer, http_port, ProbeKind::Http, None),
        ),
    ];
    let timing = ProbeTiming {
        attempt: Duration::from_secs(2),
        within: Duration::ZERO,
        pause: Duration::ZERO,
    };
    let script = render_script(&probes, timing);
    let sh = Shell::new().unwrap();
    let started = Instant::now();
    let out = cmd!(sh, "/bin/sh -s")
        .exec()
        .stdin(script)
        .quiet()
        .timeout(Duration::from_secs(30))
        .run()
        .unwrap();
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    // In parallel: the silent server's 2 s, not the sum of every probe's.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    let outcomes = parse_output(&probes, &out.stdout, "no answer");
    let got: Vec<(bool, &str, u32)> = outcomes
        .iter()
        .map(|o| (o.ok, o.reason.as_str(), o.attempts))
        .collect();
    assert_eq!(
        got,
        [
            (true, "ok", 1),
            (true, "ok", 1),
            (false, "tls", 1),
            (false, "reset", 1),
            (false, "timeout", 1),
            (false, "refused", 1),
            (true, "ok", 1),
            (false, "wrong_server", 1),
        ],
        "{}",
        out.stdout
    );
    assert_eq!(outcomes[0].detail, "open");
    assert_eq!(outcomes[1].detail, "HTTP 204, server stand-in/1.0");
    assert_eq!(
        outcomes[7].detail,
        "HTTP 204, server stand-in/1.0, not Caddy '''\" \\"
    );
}

/// A probe that fails is retried, `pause` apart, until `within` has passed.
#[test]
fn a_failing_probe_is_retried_until_its_time_is_up() {
    let refused_port = listen("127.0.0.3").1;
    let probes = [probe(
        "c",
        Ipv4Addr::new(127, 0, 0, 3),
        refused_port,
        ProbeKind::Tcp,
        None,
    )];
    let timing = ProbeTiming {
        attempt: Duration::from_secs(1),
        within: Duration::from_millis(900),
        pause: Duration::from_millis(400),
    };
    let sh = Shell::new().unwrap();
    let out = cmd!(sh, "/bin/sh -s")
        .exec()
        .stdin(render_script(&probes, timing))
        .quiet()
        .run()
        .unwrap();
    let outcome = &parse_output(&probes, &out.stdout, "")[0];
    assert_eq!(outcome.reason, "refused");
    assert!((2..=4).contains(&outcome.attempts), "{outcome:?}");
}

/// The parser on the answer the live test's script gave (committed as it was printed).
#[test]
fn the_parser_reads_a_real_answer_and_marks_what_it_lacks() {
    let text = include_str!("../fixtures/peer-probe-output.txt");
    let peer = Ipv4Addr::new(127, 0, 0, 2);
    let mut probes: Vec<PeerProbe> = (0..8)
        .map(|i| probe("b", peer, 40000 + i, ProbeKind::Tcp, None))
        .collect();
    // One the answer does not mention: the script never ran for it.
    probes.push(probe("b", peer, 40008, ProbeKind::Tcp, None));
    let outcomes = parse_output(&probes, text, "ssh to a failed: exit 255");
    let rows: Vec<String> = outcomes
        .iter()
        .map(|o| {
            format!(
                "{} ok={} {} x{} {}",
                o.probe.label(),
                o.ok,
                o.reason,
                o.attempts,
                o.detail
            )
        })
        .collect();
    insta::assert_snapshot!("peer_probe_parsed", rows.join("\n"));
    assert_eq!(outcomes[8].reason, "no_result");
    assert!(!outcomes[8].ok);
}

#[test]
fn the_parser_skips_lines_that_are_not_answers() {
    let probes = [probe(
        "b",
        Ipv4Addr::new(10, 231, 0, 11),
        22,
        ProbeKind::Tcp,
        None,
    )];
    let text = "Warning: a banner\nboma-peer-probe x ok 1 open\nboma-peer-probe 7 ok 1 open\nboma-peer-probe 0 timeout 3 no answer to the connection within 8s\n";
    let outcome = &parse_output(&probes, text, "")[0];
    assert_eq!(
        (
            outcome.ok,
            outcome.reason.as_str(),
            outcome.attempts,
            outcome.detail.as_str()
        ),
        (false, "timeout", 3, "no answer to the connection within 8s")
    );
}
