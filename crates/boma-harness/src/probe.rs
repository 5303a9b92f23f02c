//! The controller's own probes of the guest's published ports, before and after the reboot:
//! what a probe is and what it found (pure), and probing one port on this machine (the real
//! side of the `PortProber` effect).
//!
//! The load-bearing probe runs here, on the controller: a probe from inside the guest passes
//! even when the forward chain drops container traffic (local traffic takes OUTPUT DNAT, not
//! FORWARD). Each port is probed as its profile says: `tcp` (connect, then a banner or a moment
//! of silence), `http` or `https` (a request, any HTTP status counts; https sends the profile's
//! name as SNI and Host, pinned to the forwarded endpoint so the probe can never reach a real
//! host). Through QEMU's port forward a closed guest port reads as a reset and a dropped one as
//! a timeout; a silent TCP server and a dropped one look alike, so services that answer
//! requests should be probed as http or https.
//!
//! An https probe with a `ca` verifies the server against that CA alone: the harness reads the
//! certificate from the guest over its own ssh before probing (`guest_state`), keeps it in the
//! run directory in a directory of its own, and gives curl `--cacert` and, as `--capath`, that directory, so
//! the controller's own trust store plays no part. A guest without the file is said in the
//! probe's detail, and the certificate is then not verified. With a `server`, the answer's
//! `Server:` header must start with it (`wrong_server` otherwise): a port that answers, but
//! not from the service the profile means, fails.

use std::io::Read;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use boma_exec::CmdExt;
use boma_inventory::ProbeKind;
use camino::Utf8PathBuf;
use xshell::{Shell, cmd};

/// One published port, and where the controller reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortTarget {
    /// The guest's port (what the profile publishes).
    pub port: u16,
    pub kind: ProbeKind,
    /// The SNI/Host name (https only; `None`: the endpoint's host).
    pub name: Option<String>,
    /// Where the controller connects (QEMU: 127.0.0.1 and a forwarded port).
    pub host: String,
    pub endpoint_port: u16,
    /// The CA an https probe verifies against (`None`: any certificate).
    pub ca: Option<CaFile>,
    /// What the answer's `Server:` header must start with.
    pub server: Option<String>,
}

/// The CA certificate an https probe trusts, as the harness found it in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFile {
    /// Where the profile says it is, in the guest.
    pub guest_path: String,
    /// Its copy on the controller, alone in its directory; `None`: the guest has no such file.
    pub local: Option<Utf8PathBuf>,
}

/// The file name of a CA's copy, in the directory the run keeps for it.
pub const CA_FILE: &str = "ca.crt";

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProbeOutcome {
    pub port: u16,
    pub kind: String,
    pub ok: bool,
    /// `ok`, `timeout`, `refused`, `reset`, `tls`, `curl_<exit>` …
    pub reason: String,
    pub detail: String,
}

/// curl's exit codes, as reasons. 28: the forward-drop signature.
pub fn curl_reason(code: i32, stderr: &str) -> String {
    match code {
        0 => "ok".into(),
        7 => "refused".into(),
        28 => "timeout".into(),
        52 | 56 => "reset".into(),
        // QEMU's forward accepts, then resets when the guest port is closed: the handshake
        // fails with a reset, not a certificate problem.
        35 if stderr.to_lowercase().contains("reset")
            || stderr.contains("SSL_ERROR_SYSCALL")
            || stderr.to_lowercase().contains("unexpected eof") =>
        {
            "reset".into()
        }
        35 | 51 | 53 | 54 | 58 | 59 | 60 | 64 | 66 | 77 | 80 | 82 | 83 | 90 | 91 | 98 => {
            "tls".into()
        }
        other => format!("curl_{other}"),
    }
}

/// curl's arguments for an http(s) probe of `target` (program name excluded): the answer's
/// headers on stdout, the body discarded. Pure.
pub fn curl_args(target: &PortTarget, max_time: Duration) -> Vec<String> {
    let scheme = match target.kind {
        ProbeKind::Https => "https",
        _ => "http",
    };
    let name = target.name.clone().unwrap_or_else(|| target.host.clone());
    let mut args: Vec<String> = [
        "--silent",
        "--show-error",
        "--noproxy",
        "*",
        "--output",
        "/dev/null",
        "--dump-header",
        "-",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    args.extend([
        "--max-time".to_owned(),
        max_time.as_secs().max(1).to_string(),
        "--proto".to_owned(),
        format!("={scheme}"),
    ]);
    if target.kind == ProbeKind::Https {
        let trusted = target.ca.as_ref().and_then(|ca| ca.local.as_ref());
        match trusted.map(|cert| (cert, cert.parent())) {
            // `--capath` of a directory that holds only the CA: curl's default one (the
            // controller's store) is not consulted.
            Some((cert, Some(dir))) => args.extend([
                "--cacert".to_owned(),
                cert.to_string(),
                "--capath".to_owned(),
                dir.to_string(),
            ]),
            _ => args.push("--insecure".to_owned()),
        }
    }
    args.extend([
        // The name (SNI, Host) is the route's; the connection goes only to the endpoint.
        "--connect-to".to_owned(),
        format!(
            "{name}:{}:{}:{}",
            target.port, target.host, target.endpoint_port
        ),
        "--resolve".to_owned(),
        format!("{name}:{}:{}", target.port, resolve_literal(&target.host)),
        format!("{scheme}://{name}:{}/", target.port),
    ]);
    args
}

/// The status and the `Server:` header of the last answer in `headers` (curl's
/// `--dump-header`, which holds one block per answer, a `100 Continue` or a redirect
/// included). Header names are matched in any case (HTTP/2 sends them in lower case). Pure.
pub fn answer(headers: &str) -> (Option<u16>, Option<String>) {
    let last = headers
        .split("\r\n\r\n")
        .map(str::trim)
        .filter(|block| !block.is_empty())
        .last()
        .unwrap_or_default();
    let mut lines = last.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok());
    let server = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("server")
            .then(|| value.trim().to_owned())
    });
    (status, server)
}

/// What one curl run says about `target`: its exit `code`, the headers it printed, its error
/// text. Pure.
pub fn curl_outcome(target: &PortTarget, code: i32, headers: &str, stderr: &str) -> ProbeOutcome {
    let outcome = |ok: bool, reason: String, detail: String| ProbeOutcome {
        port: target.port,
        kind: target.kind.to_string(),
        ok,
        reason,
        detail,
    };
    let trust = match (target.kind, &target.ca) {
        (
            ProbeKind::Https,
            Some(CaFile {
                guest_path,
                local: Some(_),
            }),
        ) => {
            format!("; verified against {guest_path} alone")
        }
        (
            ProbeKind::Https,
            Some(CaFile {
                guest_path,
                local: None,
            }),
        ) => {
            format!("; {guest_path} is absent in the guest: certificate not verified")
        }
        (ProbeKind::Https, None) => "; certificate not verified".to_owned(),
        _ => String::new(),
    };
    if code != 0 {
        let error = stderr.lines().next().unwrap_or_default().trim();
        return outcome(
            false,
            curl_reason(code, stderr),
            format!("curl exit {code}: {error}{trust}"),
        );
    }
    let (status, server) = answer(headers);
    let status = status.map_or("?".to_owned(), |s| s.to_string());
    let said = match &server {
        Some(server) => format!("HTTP {status}, server {server}"),
        None => format!("HTTP {status}, no server header"),
    };
    match &target.server {
        Some(want)
            if !server
                .as_deref()
                .is_some_and(|s| s.starts_with(want.as_str())) =>
        {
            outcome(
                false,
                "wrong_server".to_owned(),
                format!("{said}, not {want}{trust}"),
            )
        }
        _ => outcome(true, "ok".to_owned(), format!("{said}{trust}")),
    }
}

/// `--resolve` needs an address: the endpoint host is one (127.0.0.1 or a lease address).
fn resolve_literal(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Probe `target` once, within `max_time`.
pub fn probe_once(sh: &Shell, target: &PortTarget, max_time: Duration) -> ProbeOutcome {
    match target.kind {
        ProbeKind::Tcp => tcp(target, max_time),
        ProbeKind::Http | ProbeKind::Https => {
            let args = curl_args(target, max_time);
            let run = cmd!(sh, "curl {args...}")
                .exec()
                .quiet()
                .allow_fail()
                .uninterruptible()
                .timeout(max_time + Duration::from_secs(5))
                .run();
            match run {
                Ok(out) => curl_outcome(
                    target,
                    out.status.code().unwrap_or(-1),
                    &out.stdout,
                    &out.stderr,
                ),
                Err(e) => ProbeOutcome {
                    port: target.port,
                    kind: target.kind.to_string(),
                    ok: false,
                    reason: "curl".into(),
                    detail: e.to_string(),
                },
            }
        }
    }
}

/// Probe until it answers or `within` has passed (services may still be starting after a
/// boot), a few seconds apart.
pub fn probe(sh: &Shell, target: &PortTarget, within: Duration) -> ProbeOutcome {
    let deadline = Instant::now() + within;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut outcome = probe_once(sh, target, Duration::from_secs(8));
        if outcome.ok || Instant::now() >= deadline {
            outcome.detail = format!("{} ({attempts} attempt(s))", outcome.detail);
            return outcome;
        }
        if boma_exec::interrupt::sleep(Duration::from_secs(4)).is_err() {
            return outcome;
        }
    }
}

fn tcp(target: &PortTarget, max_time: Duration) -> ProbeOutcome {
    let outcome = |ok: bool, reason: &str, detail: String| ProbeOutcome {
        port: target.port,
        kind: "tcp".into(),
        ok,
        reason: reason.into(),
        detail,
    };
    let address: Option<SocketAddr> = (target.host.as_str(), target.endpoint_port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next());
    let Some(address) = address else {
        return outcome(false, "address", format!("cannot resolve {}", target.host));
    };
    let mut stream = match TcpStream::connect_timeout(&address, max_time) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return outcome(false, "refused", e.to_string());
        }
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            return outcome(false, "timeout", e.to_string());
        }
        Err(e) => return outcome(false, "connect", e.to_string()),
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => outcome(
            false,
            "reset",
            "closed at once (the guest port is closed)".into(),
        ),
        Ok(_) => outcome(true, "ok", "open (it spoke first)".into()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            outcome(true, "ok", "open (silent)".into())
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            outcome(false, "reset", e.to_string())
        }
        Err(e) => outcome(false, "read", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: ProbeKind, name: Option<&str>) -> PortTarget {
        PortTarget {
            port: 443,
            kind,
            name: name.map(str::to_owned),
            host: "127.0.0.1".into(),
            endpoint_port: 40443,
            ca: None,
            server: None,
        }
    }

    /// askari's published port 443, as its profile says: Caddy's local root, a Caddy answer.
    fn askari(local: Option<&str>) -> PortTarget {
        PortTarget {
            ca: Some(CaFile {
                guest_path: "/srv/caddy/data/caddy/pki/authorities/local/root.crt".into(),
                local: local.map(Utf8PathBuf::from),
            }),
            server: Some("Caddy".into()),
            ..target(ProbeKind::Https, Some("status.wingu.me"))
        }
    }

    /// Captured from curl 7.88 against a loopback TLS server (fixtures/curl/README.md).
    const CADDY_502: &str = include_str!("../tests/fixtures/curl/caddy-502.headers");
    const NGINX_502: &str = include_str!("../tests/fixtures/curl/nginx-502.headers");
    const WRONG_CA: &str = include_str!("../tests/fixtures/curl/wrong-ca.stderr");

    #[test]
    fn with_a_ca_curl_trusts_it_alone_and_without_one_nothing() {
        let kept = "/run/boma-it-x/probe-ca-443/ca.crt";
        let args = curl_args(&askari(Some(kept)), Duration::from_secs(8));
        let at = args.iter().position(|a| a == "--cacert").unwrap();
        assert_eq!(
            args[at..at + 4],
            ["--cacert", kept, "--capath", "/run/boma-it-x/probe-ca-443"]
        );
        assert!(!args.contains(&"--insecure".to_owned()));
        // A CA the guest does not have: nothing to verify against.
        let args = curl_args(&askari(None), Duration::from_secs(8));
        assert!(args.contains(&"--insecure".to_owned()) && !args.contains(&"--cacert".to_owned()));
        // Plain http has no certificate to verify.
        let args = curl_args(&target(ProbeKind::Http, None), Duration::from_secs(8));
        assert!(
            !args.iter().any(|a| a == "--insecure" || a == "--cacert"),
            "{args:?}"
        );
    }

    #[test]
    fn the_answer_must_come_from_the_server_the_profile_names() {
        let kept = Some("/run/x/probe-ca-443/ca.crt");
        let ok = curl_outcome(&askari(kept), 0, CADDY_502, "");
        assert_eq!(
            (ok.ok, ok.reason.as_str(), ok.detail.as_str()),
            (
                true,
                "ok",
                "HTTP 502, server Caddy; verified against \
                 /srv/caddy/data/caddy/pki/authorities/local/root.crt alone"
            )
        );
        let other = curl_outcome(&askari(kept), 0, NGINX_502, "");
        assert_eq!(
            (other.ok, other.reason.as_str(), other.detail.as_str()),
            (
                false,
                "wrong_server",
                "HTTP 502, server nginx/1.27, not Caddy; verified against \
                 /srv/caddy/data/caddy/pki/authorities/local/root.crt alone"
            )
        );
        // Any server will do when the profile names none.
        assert!(curl_outcome(&target(ProbeKind::Https, None), 0, NGINX_502, "").ok);
        // No header at all is not the server asked for.
        let bare = curl_outcome(&askari(kept), 0, "HTTP/1.1 200 OK\r\n\r\n", "");
        assert_eq!((bare.ok, bare.reason.as_str()), (false, "wrong_server"));
    }

    #[test]
    fn a_certificate_not_from_the_ca_fails_and_a_missing_ca_is_said() {
        let wrong = curl_outcome(&askari(Some("/run/x/ca.crt")), 60, "", WRONG_CA);
        assert_eq!((wrong.ok, wrong.reason.as_str()), (false, "tls"));
        assert!(
            wrong.detail.starts_with(
                "curl exit 60: curl: (60) SSL certificate problem: unable to get local issuer certificate"
            ),
            "{}",
            wrong.detail
        );
        let unverified = curl_outcome(&askari(None), 0, CADDY_502, "");
        assert!(unverified.ok);
        assert_eq!(
            unverified.detail,
            "HTTP 502, server Caddy; /srv/caddy/data/caddy/pki/authorities/local/root.crt is \
             absent in the guest: certificate not verified"
        );
    }

    #[test]
    fn the_last_answer_counts_and_header_names_have_any_case() {
        // HTTP/2, as Caddy answers over TLS, sends header names in lower case (RFC 9113).
        let h2 = "HTTP/2 502 \r\nalt-svc: h3=\":443\"; ma=2592000\r\nserver: Caddy\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(answer(h2), (Some(502), Some("Caddy".to_owned())));
        let continued = format!("HTTP/1.1 100 Continue\r\n\r\n{CADDY_502}");
        assert_eq!(answer(&continued), (Some(502), Some("Caddy".to_owned())));
        assert_eq!(answer(""), (None, None));
    }

    #[test]
    fn https_pins_the_name_to_the_endpoint() {
        let args = curl_args(
            &target(ProbeKind::Https, Some("askari.example")),
            Duration::from_secs(8),
        );
        insta::assert_snapshot!("curl_args_https", args.join("\n"));
    }

    #[test]
    fn reasons_from_curl_exit_codes() {
        assert_eq!(curl_reason(28, ""), "timeout");
        assert_eq!(curl_reason(7, ""), "refused");
        assert_eq!(
            curl_reason(35, "OpenSSL SSL_connect: Connection reset by peer"),
            "reset"
        );
        assert_eq!(curl_reason(60, "certificate"), "tls");
        assert_eq!(curl_reason(6, ""), "curl_6");
    }

    #[test]
    fn tcp_probe_on_loopback() {
        // A listener that speaks first, one that stays silent, and a closed port.
        let speaks = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = speaks.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = speaks.accept().unwrap();
            use std::io::Write;
            s.write_all(b"SSH-2.0-x\r\n").unwrap();
        });
        let mut t = target(ProbeKind::Tcp, None);
        t.endpoint_port = port;
        let got = tcp(&t, Duration::from_secs(2));
        assert!(got.ok, "{got:?}");
        server.join().unwrap();

        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        t.endpoint_port = silent.local_addr().unwrap().port();
        assert_eq!(tcp(&t, Duration::from_secs(2)).detail, "open (silent)");

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        t.endpoint_port = closed.local_addr().unwrap().port();
        drop(closed);
        let got = tcp(&t, Duration::from_secs(2));
        assert!(!got.ok && got.reason == "refused", "{got:?}");
    }
}
