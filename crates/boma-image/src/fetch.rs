//! Reading a URL (http, https or a local file) as a stream, hashing it on the way through.

use boma_exec::say;
use std::fs::File;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use boma_exec::interrupt;
use camino::Utf8Path;
use sha2::{Digest as _, Sha512};

use crate::CacheError;
use crate::error::io_err;
use crate::progress::Progress;
use crate::source::{Location, locate};

/// How long to wait for the TCP connection (and TLS handshake), and for DNS.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one read may wait for data: a stalled download fails instead of hanging.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Chunk size: large enough for throughput, small enough for prompt interrupt checks.
pub(crate) const CHUNK: usize = 1024 * 1024;
/// A checksum file larger than this is not a checksum file.
const MAX_SUMS_BYTES: u64 = 4 * 1024 * 1024;

/// The HTTP client: bounded connect and per-read waits, no bound on the total (a slow mirror
/// is still a mirror).
pub(crate) fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_resolve(Some(CONNECT_TIMEOUT))
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        .user_agent(concat!("boma-image/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::new_with_config(config)
}

/// An open body and the length it announced.
struct Body {
    reader: Box<dyn Read + Send>,
    len: Option<u64>,
}

fn open(agent: &ureq::Agent, url: &str) -> Result<Body, CacheError> {
    match locate(url)? {
        Location::Http => {
            let response = agent.get(url).call().map_err(|e| classify(url, e))?;
            let body = response.into_body();
            let len = body.content_length();
            Ok(Body {
                reader: Box::new(body.into_reader()),
                len,
            })
        }
        Location::File(path) => {
            let file = File::open(&path).map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => CacheError::NotFound {
                    url: url.to_owned(),
                },
                _ => io_err("open", &path)(source),
            })?;
            let len = file.metadata().map_err(io_err("stat", &path))?.len();
            Ok(Body {
                reader: Box::new(file),
                len: Some(len),
            })
        }
    }
}

/// Sort a failed request into what the caller must do about it.
pub(crate) fn classify(url: &str, error: ureq::Error) -> CacheError {
    let url = url.to_owned();
    match error {
        ureq::Error::StatusCode(404 | 410) => CacheError::NotFound { url },
        ureq::Error::StatusCode(status) => CacheError::HttpStatus { url, status },
        source if is_unreachable(&source) => CacheError::Unreachable { url, source },
        source => CacheError::Request { url, source },
    }
}

/// DNS failure, refused/unroutable connection, connect timeout: nobody answered at all.
fn is_unreachable(error: &ureq::Error) -> bool {
    match error {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(ureq::Timeout::Resolve | ureq::Timeout::Connect) => true,
        ureq::Error::Io(e) => {
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkUnreachable
                    | io::ErrorKind::NetworkDown
                    | io::ErrorKind::AddrNotAvailable
                    | io::ErrorKind::TimedOut
            )
                // getaddrinfo failures reach us as an uncategorised io::Error with this text
                // (std's wording, stable for years); there is no ErrorKind to match on.
                || e.to_string().starts_with("failed to lookup address information")
        }
        _ => false,
    }
}

/// Read a small text resource (a checksum file) whole.
pub(crate) fn fetch_text(agent: &ureq::Agent, url: &str) -> Result<String, CacheError> {
    let body = open(agent, url)?;
    let mut bytes = Vec::new();
    body.reader
        .take(MAX_SUMS_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| CacheError::Transfer {
            url: url.to_owned(),
            received: bytes.len() as u64,
            source,
        })?;
    let received = bytes.len() as u64;
    if received > MAX_SUMS_BYTES {
        let reason = format!("it is larger than {MAX_SUMS_BYTES} bytes");
        return Err(CacheError::BadSums {
            url: url.to_owned(),
            reason,
        });
    }
    if let Some(expected) = body.len.filter(|&len| len != received) {
        return Err(CacheError::Truncated {
            url: url.to_owned(),
            received,
            expected,
        });
    }
    // Not UTF-8 means not a checksum file; the parser then says which line is wrong.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// What a completed transfer produced.
pub(crate) struct Fetched {
    pub(crate) sha512: String,
    pub(crate) bytes: u64,
    pub(crate) elapsed: Duration,
}

/// Stream `url` into `dest` in constant memory, hashing as it goes, checking for an interrupt
/// between chunks. The caller owns `dest` and deletes it on any error.
pub(crate) fn fetch_into(
    agent: &ureq::Agent,
    url: &str,
    name: &str,
    dest: &mut File,
    dest_path: &Utf8Path,
) -> Result<Fetched, CacheError> {
    let started = Instant::now();
    say!("fetching {url}");
    let mut body = open(agent, url)?;
    let mut progress = Progress::new(name, body.len);
    let mut hasher = Sha512::new();
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0u64;
    let outcome = loop {
        if let Err(interrupted) = interrupt::check() {
            break Err(interrupted.into());
        }
        let n = match body.reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                break Err(CacheError::Transfer {
                    url: url.to_owned(),
                    received,
                    source,
                });
            }
        };
        hasher.update(&buf[..n]);
        if let Err(e) = dest.write_all(&buf[..n]) {
            break Err(io_err("write", dest_path)(e));
        }
        received += n as u64;
        progress.advance(n as u64);
    };
    progress.finish();
    outcome?;
    if let Some(expected) = body.len.filter(|&len| len != received) {
        return Err(CacheError::Truncated {
            url: url.to_owned(),
            received,
            expected,
        });
    }
    Ok(Fetched {
        sha512: hex::encode(hasher.finalize()),
        bytes: received,
        elapsed: started.elapsed(),
    })
}

/// SHA-512 of a file, in constant memory, interruptible. Returns (hex digest, size).
pub fn hash_file(path: &Utf8Path) -> Result<(String, u64), CacheError> {
    hash_through(path, None)
}

/// Copy the file at `path` into `dest` (at `dest_path`), hashing the bytes on the way: one read
/// of the source, and the digest is of exactly what was written. Returns (hex digest, size).
pub(crate) fn copy_hashing(
    path: &Utf8Path,
    dest: &mut File,
    dest_path: &Utf8Path,
) -> Result<(String, u64), CacheError> {
    hash_through(path, Some((dest, dest_path)))
}

fn hash_through(
    path: &Utf8Path,
    mut copy: Option<(&mut File, &Utf8Path)>,
) -> Result<(String, u64), CacheError> {
    let mut file = File::open(path).map_err(io_err("open", path))?;
    let mut hasher = Sha512::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        interrupt::check()?;
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("read", path)(e)),
        };
        hasher.update(&buf[..n]);
        if let Some((dest, dest_path)) = copy.as_mut() {
            dest.write_all(&buf[..n])
                .map_err(io_err("write", dest_path))?;
        }
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(error: ureq::Error) -> &'static str {
        match classify("http://h/x", error) {
            CacheError::Unreachable { .. } => "unreachable",
            CacheError::NotFound { .. } => "not found",
            CacheError::HttpStatus { .. } => "status",
            CacheError::Request { .. } => "request",
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn unreachable_hosts_are_told_apart_from_wrong_urls() {
        use io::ErrorKind::*;
        let dns =
            io::Error::other("failed to lookup address information: Name or service not known");
        assert_eq!(kind(ureq::Error::Io(dns)), "unreachable");
        assert_eq!(kind(ureq::Error::HostNotFound), "unreachable");
        assert_eq!(kind(ureq::Error::ConnectionFailed), "unreachable");
        assert_eq!(
            kind(ureq::Error::Timeout(ureq::Timeout::Connect)),
            "unreachable"
        );
        assert_eq!(
            kind(ureq::Error::Timeout(ureq::Timeout::Resolve)),
            "unreachable"
        );
        for k in [
            ConnectionRefused,
            HostUnreachable,
            NetworkUnreachable,
            TimedOut,
        ] {
            assert_eq!(kind(ureq::Error::Io(k.into())), "unreachable", "{k:?}");
        }
        assert_eq!(kind(ureq::Error::StatusCode(404)), "not found");
        assert_eq!(kind(ureq::Error::StatusCode(410)), "not found");
        assert_eq!(kind(ureq::Error::StatusCode(503)), "status");
        // The host answered, then something broke: not a reason to build instead.
        assert_eq!(kind(ureq::Error::Io(ConnectionReset.into())), "request");
        assert_eq!(
            kind(ureq::Error::Timeout(ureq::Timeout::PerRead)),
            "request"
        );
        assert_eq!(kind(ureq::Error::Tls("bad certificate")), "request");
    }
}
