//! Test fixtures: a tiny HTTP/1.1 server on loopback that serves exact bytes, 404s and broken
//! bodies and counts requests, plus deterministic image bytes and their checksum files.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use sha2::{Digest as _, Sha512};

/// What the server answers for one path.
#[derive(Clone)]
pub enum Reply {
    /// 200 with exactly these bytes.
    Body(Vec<u8>),
    /// 404.
    NotFound,
    /// Announce `promised` bytes in Content-Length, send `body`, then drop the connection.
    Truncated { body: Vec<u8>, promised: usize },
    /// 200 with `body`, but call `hook` after the first `at` bytes are on the wire.
    Paused {
        body: Vec<u8>,
        at: usize,
        hook: Arc<dyn Fn() + Send + Sync>,
    },
}

pub struct Server {
    port: u16,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Listen on 127.0.0.1 (any free port); one thread per connection, so a slow reply does
    /// not hold up a concurrent client.
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes = Arc::new(Mutex::new(HashMap::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (r, q) = (Arc::clone(&routes), Arc::clone(&requests));
        // The accept loop lives until the test process exits.
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, q) = (Arc::clone(&r), Arc::clone(&q));
                thread::spawn(move || serve(stream, &r, &q));
            }
        });
        Server {
            port,
            routes,
            requests,
        }
    }

    pub fn route(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_owned(), reply);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Paths requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, routes: &Mutex<HashMap<String, Reply>>, requests: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers: the answer depends on the path alone.
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("").to_owned();
    requests.lock().unwrap().push(path.clone());
    let reply = routes
        .lock()
        .unwrap()
        .get(&path)
        .cloned()
        .unwrap_or(Reply::NotFound);
    let mut out = stream;
    let head = |status: &str, len: usize| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
    };
    // Write errors mean the client hung up, which some tests do on purpose.
    let _ = match reply {
        Reply::Body(body) => out
            .write_all(head("200 OK", body.len()).as_bytes())
            .and_then(|()| out.write_all(&body)),
        Reply::NotFound => out
            .write_all(head("404 Not Found", 10).as_bytes())
            .and_then(|()| out.write_all(b"not found\n")),
        Reply::Truncated { body, promised } => out
            .write_all(head("200 OK", promised).as_bytes())
            .and_then(|()| out.write_all(&body)),
        Reply::Paused { body, at, hook } => out
            .write_all(head("200 OK", body.len()).as_bytes())
            .and_then(|()| out.write_all(&body[..at]))
            .and_then(|()| out.flush())
            .map(|()| hook())
            .and_then(|()| out.write_all(&body[at..])),
    };
    // Dropping `out` closes the connection; for Truncated that is the point.
}

/// Deterministic, incompressible-looking bytes (xorshift), distinct per seed.
pub fn image_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

pub fn sha512_hex(bytes: &[u8]) -> String {
    hex::encode(Sha512::digest(bytes))
}

/// A publisher's SHA512SUMS listing `name` with `digest`, among other files as on Debian's site.
pub fn sums_listing(name: &str, digest: &str) -> String {
    format!(
        "{}  debian-13-genericcloud-amd64.json\n{digest}  {name}\n{} *debian-13-genericcloud-amd64.raw\n",
        "1".repeat(128),
        "2".repeat(128)
    )
}
