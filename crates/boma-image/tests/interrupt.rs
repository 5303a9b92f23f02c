//! Ctrl-C during a download or while waiting for the lock. A test binary of its own, outside
//! `tests/it/`, because it needs its own process: it raises the process-global interrupt flag,
//! which every download and lock wait in the process obeys, so in `it` it would fail whichever
//! of `it`'s tests (run in parallel, taking no lock) were downloading at that moment.

#[path = "it/support.rs"]
mod support;

use std::fs;
use std::sync::Arc;

use boma_exec::interrupt;
use boma_image::{Cache, CacheError, DownloadSource, GENERICCLOUD};
use camino::Utf8Path;
use support::{Reply, Server, image_bytes, sha512_hex, sums_listing};
use tempfile::TempDir;

/// SIGINT's number on Linux.
const SIGINT: i32 = 2;

// One test function: both halves use the process-global flag and must not interleave.
#[test]
fn an_interrupt_stops_a_download_or_a_wait_and_leaves_nothing_behind() {
    let server = Server::start();
    let image = image_bytes(4 * 1024 * 1024, 9);
    // The "signal" arrives while the body is half sent.
    let hook: Arc<dyn Fn() + Send + Sync> = Arc::new(|| interrupt::simulate(SIGINT));
    server.route(
        "/d/SHA512SUMS",
        Reply::Body(sums_listing(GENERICCLOUD, &sha512_hex(&image)).into_bytes()),
    );
    server.route(
        &format!("/d/{GENERICCLOUD}"),
        Reply::Paused {
            body: image.clone(),
            at: 1024 * 1024,
            hook,
        },
    );
    let tmp = TempDir::new().unwrap();
    let dir = Utf8Path::from_path(tmp.path()).unwrap();
    let cache = Cache::open(dir).unwrap();
    let source = DownloadSource::with_sums_beside(&server.url(&format!("/d/{GENERICCLOUD}")));

    let err = cache.ensure_downloaded(&source).unwrap_err();
    assert!(matches!(err, CacheError::Interrupted(_)), "{err:?}");
    assert_eq!(err.interrupted().map(|i| i.exit_code()), Some(130));
    let left: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [".lock"], "the partial download must be deleted");

    // Waiting for a lock another run holds: Ctrl-C ends the wait instead of hanging.
    interrupt::reset();
    let holder = Cache::open(dir).unwrap();
    let _held = holder.lock().unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| Cache::open(dir).unwrap().lock().map(drop));
        std::thread::sleep(std::time::Duration::from_millis(300));
        interrupt::simulate(SIGINT);
        let err = waiter.join().unwrap().unwrap_err();
        assert!(err.interrupted().is_some(), "{err:?}");
    });

    // Once the interrupt is handled, the next run downloads normally.
    interrupt::reset();
    drop(_held);
    server.route(&format!("/d/{GENERICCLOUD}"), Reply::Body(image.clone()));
    assert_eq!(
        fs::read(cache.ensure_downloaded(&source).unwrap()).unwrap(),
        image
    );
}
