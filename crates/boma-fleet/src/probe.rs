//! Peer probes: each member's published ports probed from every other member, over the fleet
//! segment, before the first round and after every round. The controller's probes show what a
//! client outside sees; these show what a peer sees: a firewall that admits a peer through an
//! entry made at apply time passes the first and fails the second.
//!
//! The harness sends [`render_script`] to the probing member over its ssh, as it sends the
//! capture script (`sudo sh -s`, script on stdin), and reads the answer with [`parse_output`].
//! The script is python3 (every member has it: Ansible needs it), so that one program opens
//! each kind of probe the same way and names its reasons the same way: `tcp` connects; `http`
//! and `https` send a request to the peer's fleet address with the profile's name as Host (and
//! as SNI), where any HTTP status counts. A probe is retried until it answers or its time is up
//! (services may still be starting after a boot), the probes run in parallel, and each prints
//! one line. A port whose profile names a `server` must answer with a `Server:` header that
//! starts with it (`wrong_server` otherwise), as the controller's probe requires. Its `ca` is
//! the controller's to verify (the CA file lives on the probed member, not on the prober): a
//! peer probe checks that the peer gets an answer from the right service, not the certificate.
//! Pure.

use std::net::Ipv4Addr;
use std::time::Duration;

use boma_inventory::{ProbeKind, PublishedPort};

/// A member as a probe target.
#[derive(Debug, Clone, Copy)]
pub struct PeerTarget<'a> {
    pub name: &'a str,
    pub address: Ipv4Addr,
    pub ports: &'a [PublishedPort],
}

/// One probe: `from` connects to `to`'s `port` at `to`'s fleet address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerProbe {
    pub from: String,
    pub to: String,
    pub address: Ipv4Addr,
    pub port: u16,
    pub kind: ProbeKind,
    /// Host (and SNI) for http/https; `None`: the address.
    pub name: Option<String>,
    /// What the answer's `Server:` header must start with (http/https).
    pub server: Option<String>,
}

impl PeerProbe {
    /// `a → b:8080`, as findings name it.
    pub fn label(&self) -> String {
        format!("{} → {}:{}", self.from, self.to, self.port)
    }
}

/// Every probe, grouped by the member that makes it (in fleet order): for each member, every
/// other member's published ports, in their profile's order.
pub fn plan(members: &[PeerTarget<'_>]) -> Vec<PeerProbe> {
    let mut probes = Vec::new();
    for from in members {
        for to in members.iter().filter(|m| m.name != from.name) {
            for port in to.ports {
                probes.push(PeerProbe {
                    from: from.name.to_owned(),
                    to: to.name.to_owned(),
                    address: to.address,
                    port: port.port,
                    kind: port.probe,
                    name: port.name.clone(),
                    server: port.server.clone(),
                });
            }
        }
    }
    probes
}

/// How long a probe may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeTiming {
    /// One attempt: connect, and for http(s) the answer's first line.
    pub attempt: Duration,
    /// Attempts are repeated, `pause` apart, until one answers or this has passed.
    pub within: Duration,
    pub pause: Duration,
}

/// As the controller's probes: 8 s an attempt, for up to 45 s, 4 s apart.
pub const PROBE_TIMING: ProbeTiming = ProbeTiming {
    attempt: Duration::from_secs(8),
    within: Duration::from_secs(45),
    pause: Duration::from_secs(4),
};

/// What every answer line starts with; other lines (a login banner, a warning) are skipped.
const MARKER: &str = "boma-peer-probe";

/// The python program's body, after the imports and the constants [`render_script`] writes:
/// `PROBES`, a list of `[address, port, kind, host, server]`, and the timing in seconds. An answer
/// line is `boma-peer-probe <index> <reason> <attempts> <detail>`.
const PROGRAM: &str = r#"def once(address, port, kind, host, want):
    try:
        sock = socket.create_connection((address, port), timeout=ATTEMPT)
    except socket.timeout:
        return "timeout", "no answer to the connection within %gs" % ATTEMPT
    except ConnectionRefusedError as e:
        return "refused", str(e)
    except OSError as e:
        if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "unreachable", str(e)
        return "connect", str(e)
    try:
        if kind == "tcp":
            return "ok", "open"
        sock.settimeout(ATTEMPT)
        if kind == "https":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock, server_hostname=host)
        request = "GET / HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: boma-peer-probe\r\nConnection: close\r\n\r\n"
        sock.sendall((request % (host, port)).encode("ascii"))
        answer = sock.makefile("rb")
        line = answer.readline(200)
        if not line:
            return "reset", "closed without an answer"
        if not line.startswith(b"HTTP/") or len(line.split()) < 2:
            return "http", "not an HTTP answer: %r" % line[:60]
        status = line.split()[1].decode("ascii", "replace")
        server = None
        for _ in range(100):
            header = answer.readline(1000).decode("latin-1").strip()
            if not header:
                break
            name, _, value = header.partition(":")
            if name.strip().lower() == "server":
                server = value.strip()
        if server:
            said = "HTTP %s, server %s" % (status, server)
        else:
            said = "HTTP %s, no server header" % status
        if want and not (server or "").startswith(want):
            return "wrong_server", "%s, not %s" % (said, want)
        return "ok", said
    except ssl.SSLError as e:
        return "tls", str(e)
    except socket.timeout:
        return "timeout", "connected, no answer within %gs" % ATTEMPT
    except ConnectionResetError as e:
        return "reset", str(e)
    except OSError as e:
        return "read", str(e)
    finally:
        sock.close()

def probe(index, results):
    address, port, kind, host, want = PROBES[index]
    deadline = time.monotonic() + WITHIN
    attempts = 0
    while True:
        attempts += 1
        reason, detail = once(address, port, kind, host or address, want)
        if reason == "ok" or time.monotonic() >= deadline:
            break
        time.sleep(PAUSE)
    results[index] = (reason, attempts, detail)

results = {}
threads = [threading.Thread(target=probe, args=(i, results)) for i in range(len(PROBES))]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
for index in range(len(PROBES)):
    reason, attempts, detail = results[index]
    print("boma-peer-probe %d %s %d %s" % (index, reason, attempts, " ".join(detail.split())))
sys.stdout.flush()
"#;

/// The script `probes` (all made by one member) run as; POSIX `sh` that hands the program to
/// python3. The probes are a JSON list inside a python raw string: JSON escapes `"` and `\`,
/// and every `'` is written `\u0027` (the same JSON), so no value can end the string.
pub fn render_script(probes: &[PeerProbe], timing: ProbeTiming) -> String {
    let list: Vec<serde_json::Value> = probes
        .iter()
        .map(|p| {
            serde_json::json!([
                p.address.to_string(),
                p.port,
                p.kind.to_string(),
                p.name.clone().unwrap_or_default(),
                p.server.clone().unwrap_or_default()
            ])
        })
        .collect();
    let list = serde_json::to_string(&list)
        .expect("a list of strings and numbers serialises")
        .replace('\'', "\\u0027");
    let seconds = |d: Duration| format!("{}", d.as_secs_f64());
    format!(
        "# boma peer probes (boma-fleet): run with `sh -s`, script on stdin.\n\
         exec python3 - <<'BOMA_PEER_PROBE'\n\
         import errno, json, socket, ssl, sys, threading, time\n\
         PROBES = json.loads(r'''{list}''')\n\
         ATTEMPT = {}\n\
         WITHIN = {}\n\
         PAUSE = {}\n\
         {PROGRAM}BOMA_PEER_PROBE\n",
        seconds(timing.attempt),
        seconds(timing.within),
        seconds(timing.pause),
    )
}

/// What one peer probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerOutcome {
    pub probe: PeerProbe,
    pub ok: bool,
    /// `ok`, `timeout`, `refused`, `unreachable`, `reset`, `tls`, `http`, `wrong_server`,
    /// `connect`, `read`, or `no_result` when the script said nothing about it.
    pub reason: String,
    pub attempts: u32,
    pub detail: String,
}

/// Reads the answer of [`render_script`] for `probes` (the same list, in the same order). A
/// probe the answer does not mention — the script did not run, the member did not answer —
/// is `no_result`, with `missing` as its detail.
pub fn parse_output(probes: &[PeerProbe], stdout: &str, missing: &str) -> Vec<PeerOutcome> {
    let mut found: Vec<Option<(String, u32, String)>> = vec![None; probes.len()];
    for line in stdout.lines() {
        let mut words = line.splitn(5, ' ');
        if words.next() != Some(MARKER) {
            continue;
        }
        let (Some(index), Some(reason), Some(attempts)) = (
            words.next().and_then(|w| w.parse::<usize>().ok()),
            words.next(),
            words.next().and_then(|w| w.parse::<u32>().ok()),
        ) else {
            continue;
        };
        if let Some(slot) = found.get_mut(index) {
            *slot = Some((
                reason.to_owned(),
                attempts,
                words.next().unwrap_or_default().to_owned(),
            ));
        }
    }
    probes
        .iter()
        .zip(found)
        .map(|(probe, answer)| {
            let (reason, attempts, detail) =
                answer.unwrap_or_else(|| ("no_result".to_owned(), 0, missing.to_owned()));
            PeerOutcome {
                probe: probe.clone(),
                ok: reason == "ok",
                reason,
                attempts,
                detail,
            }
        })
        .collect()
}
