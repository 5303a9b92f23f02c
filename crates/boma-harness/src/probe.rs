//! The controller's own probes of the guest's published ports, before and after the reboot.
//!
//! The load-bearing probe runs here, on the controller: a probe from inside the guest passes
//! even when the forward chain drops container traffic (local traffic takes OUTPUT DNAT, not
//! FORWARD). Each port is probed as its profile says: `tcp` (connect, then a banner or a moment
//! of silence), `http` or `https` (a request, any HTTP status counts; https sends the profile's
//! name as SNI and Host, pinned to the forwarded endpoint so the probe can never reach a real
//! host). Through QEMU's port forward a closed guest port reads as a reset and a dropped one as
//! a timeout; a silent TCP server and a dropped one look alike, so services that answer
//! requests should be probed as http or https.

use std::io::Read;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use boma_exec::CmdExt;
use boma_inventory::ProbeKind;
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
}

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

/// curl's arguments for an http(s) probe of `target` (program name excluded). Pure.
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
        "--insecure",
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_code}",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    args.extend([
        "--max-time".to_owned(),
        max_time.as_secs().max(1).to_string(),
        "--proto".to_owned(),
        format!("={scheme}"),
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
            let outcome = |ok: bool, reason: String, detail: String| ProbeOutcome {
                port: target.port,
                kind: target.kind.to_string(),
                ok,
                reason,
                detail,
            };
            match run {
                Ok(out) => {
                    let code = out.status.code().unwrap_or(-1);
                    let reason = curl_reason(code, &out.stderr);
                    let status = out.stdout.trim().to_owned();
                    let detail = if code == 0 {
                        format!("HTTP {status}")
                    } else {
                        format!("curl exit {code}: {}", out.stderr.trim())
                    };
                    outcome(code == 0, reason, detail)
                }
                Err(e) => outcome(false, "curl".into(), e.to_string()),
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
        }
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
