//! The cache against a real HTTP server on loopback and real files: every way a download can go
//! wrong leaves nothing in the cache, and nothing unverified ever comes out of it.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::support::{Reply, Server, image_bytes, sha512_hex, sums_listing};
use boma_image::{BUILT, Cache, CacheError, DownloadSource, GENERICCLOUD, Origin, Verification};
use camino::{Utf8Path, Utf8PathBuf};
use tempfile::TempDir;

/// A little over 5 MiB: several read chunks, and enough for the plain progress lines.
const IMAGE_LEN: usize = 5 * 1024 * 1024 + 17;
const IMAGE_PATH: &str = "/images/debian-13-genericcloud-amd64.qcow2";
const SUMS_PATH: &str = "/images/SHA512SUMS";

struct Fixture {
    server: Server,
    _tmp: TempDir,
    dir: Utf8PathBuf,
    image: Vec<u8>,
    source: DownloadSource,
}

/// A server publishing one good image and its checksum file, and an empty cache directory.
fn fixture() -> Fixture {
    let server = Server::start();
    let image = image_bytes(IMAGE_LEN, 1);
    server.route(IMAGE_PATH, Reply::Body(image.clone()));
    server.route(
        SUMS_PATH,
        Reply::Body(sums_listing(GENERICCLOUD, &sha512_hex(&image)).into_bytes()),
    );
    let tmp = TempDir::new().unwrap();
    let dir = Utf8Path::from_path(tmp.path()).unwrap().join("cache");
    let source = DownloadSource::with_sums_beside(&server.url(IMAGE_PATH));
    assert_eq!(source.sums_url, server.url(SUMS_PATH));
    Fixture {
        server,
        _tmp: tmp,
        dir,
        image,
        source,
    }
}

/// Overwrite a cached image in place, as only a careless root could: cache images are read-only.
fn overwrite(path: &Utf8Path, bytes: &[u8]) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(path, bytes).unwrap();
}

/// The cache directory's file names, without the lock file.
fn files(dir: &Utf8Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".lock")
        .collect();
    names.sort();
    names
}

#[test]
fn a_good_image_is_fetched_verified_and_recorded() {
    let f = fixture();
    let cache = Cache::open(&f.dir).unwrap();
    let path = cache.ensure_downloaded(&f.source).unwrap();

    assert_eq!(path, f.dir.join(GENERICCLOUD));
    assert_eq!(fs::read(&path).unwrap(), f.image);
    assert_eq!(f.server.requests(), [SUMS_PATH, IMAGE_PATH]);
    assert_eq!(
        files(&f.dir),
        [
            "SHA512SUMS",
            GENERICCLOUD,
            "debian-13-genericcloud-amd64.qcow2.origin"
        ]
    );
    // The cache's own checksum file is in sha512sum format, so `sha512sum -c` works on it.
    let sums = fs::read_to_string(f.dir.join("SHA512SUMS")).unwrap();
    assert_eq!(sums, format!("{}  {GENERICCLOUD}\n", sha512_hex(&f.image)));
    assert_eq!(cache.verify(GENERICCLOUD).unwrap(), Verification::Ok);
    // Replaced by rename only, never written in place: a run's pin (a hard link) stays as verified.
    assert_eq!(path.metadata().unwrap().permissions().mode() & 0o777, 0o444);

    let listed = cache.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, GENERICCLOUD);
    assert_eq!(listed[0].size, Some(IMAGE_LEN as u64));
    assert_eq!(listed[0].verification, Verification::Ok);
    assert_eq!(
        listed[0].origin,
        Some(Origin::Downloaded {
            url: f.source.image_url.clone()
        })
    );
    assert!(listed[0].sidecars.is_empty());
}

#[test]
fn a_wrong_checksum_is_refused_and_nothing_is_kept() {
    let f = fixture();
    let other = sha512_hex(b"another image");
    f.server.route(
        SUMS_PATH,
        Reply::Body(sums_listing(GENERICCLOUD, &other).into_bytes()),
    );
    let cache = Cache::open(&f.dir).unwrap();

    let err = cache.ensure_downloaded(&f.source).unwrap_err();
    let CacheError::Mismatch {
        expected, actual, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(*expected, other);
    assert_eq!(*actual, sha512_hex(&f.image));
    assert!(
        err.to_string().contains("the download was deleted"),
        "{err}"
    );
    assert_eq!(files(&f.dir), Vec::<String>::new());
    assert_eq!(cache.verify(GENERICCLOUD).unwrap(), Verification::Missing);
}

#[test]
fn an_image_missing_from_the_checksum_file_is_not_even_downloaded() {
    let f = fixture();
    f.server.route(
        SUMS_PATH,
        Reply::Body(sums_listing("some-other.qcow2", &"3".repeat(128)).into_bytes()),
    );
    let cache = Cache::open(&f.dir).unwrap();

    let err = cache.ensure_downloaded(&f.source).unwrap_err();
    assert!(
        matches!(&err, CacheError::MissingEntry { name, .. } if name == GENERICCLOUD),
        "{err}"
    );
    assert_eq!(f.server.requests(), [SUMS_PATH]);
    assert_eq!(files(&f.dir), Vec::<String>::new());
}

#[test]
fn a_checksum_url_that_serves_something_else_is_named() {
    let f = fixture();
    f.server.route(
        SUMS_PATH,
        Reply::Body(b"<html>mirror maintenance</html>\n".to_vec()),
    );
    let err = Cache::open(&f.dir)
        .unwrap()
        .ensure_downloaded(&f.source)
        .unwrap_err();
    assert!(matches!(err, CacheError::BadSums { .. }), "{err}");
    assert_eq!(files(&f.dir), Vec::<String>::new());
}

#[test]
fn a_404_is_a_wrong_url_not_an_unreachable_host() {
    let f = fixture();
    let cache = Cache::open(&f.dir).unwrap();
    f.server.route(IMAGE_PATH, Reply::NotFound);
    let err = cache.ensure_downloaded(&f.source).unwrap_err();
    assert!(
        matches!(&err, CacheError::NotFound { url } if *url == f.source.image_url),
        "{err}"
    );
    assert!(!err.is_unreachable());
    assert_eq!(files(&f.dir), Vec::<String>::new());

    f.server.route(SUMS_PATH, Reply::NotFound);
    let err = cache.ensure_downloaded(&f.source).unwrap_err();
    assert!(
        matches!(&err, CacheError::NotFound { url } if *url == f.source.sums_url),
        "{err}"
    );
}

#[test]
fn a_connection_dropped_mid_file_leaves_nothing_cached() {
    let f = fixture();
    let half = f.image[..IMAGE_LEN / 2].to_vec();
    f.server.route(
        IMAGE_PATH,
        Reply::Truncated {
            body: half,
            promised: IMAGE_LEN,
        },
    );
    let cache = Cache::open(&f.dir).unwrap();

    let err = cache.ensure_downloaded(&f.source).unwrap_err();
    assert!(
        matches!(
            err,
            CacheError::Transfer { .. } | CacheError::Truncated { .. }
        ),
        "{err:?}"
    );
    assert!(!err.is_unreachable());
    assert_eq!(files(&f.dir), Vec::<String>::new());

    // The next run starts clean and succeeds once the server behaves.
    f.server.route(IMAGE_PATH, Reply::Body(f.image.clone()));
    assert_eq!(
        fs::read(cache.ensure_downloaded(&f.source).unwrap()).unwrap(),
        f.image
    );
}

#[test]
fn a_stale_part_file_is_discarded_not_resumed() {
    let f = fixture();
    fs::create_dir_all(&f.dir).unwrap();
    // Longer than the image and wrong: appending to it or trusting it would both show.
    fs::write(
        f.dir.join(format!("{GENERICCLOUD}.part")),
        vec![0xAA; IMAGE_LEN + 100],
    )
    .unwrap();
    let cache = Cache::open(&f.dir).unwrap();

    let path = cache.ensure_downloaded(&f.source).unwrap();
    assert_eq!(fs::read(path).unwrap(), f.image);
    assert!(!f.dir.join(format!("{GENERICCLOUD}.part")).exists());
}

#[test]
fn a_cached_image_is_reused_without_any_request() {
    let f = fixture();
    let cache = Cache::open(&f.dir).unwrap();
    let first = cache.ensure_downloaded(&f.source).unwrap();
    assert_eq!(f.server.requests().len(), 2);

    // A second run, as a new process would open it.
    let again = Cache::open(&f.dir)
        .unwrap()
        .ensure_downloaded(&f.source)
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(
        f.server.requests().len(),
        2,
        "the network was touched: {:?}",
        f.server.requests()
    );
}

#[test]
fn a_truncated_cached_image_is_detected_deleted_and_fetched_again() {
    let f = fixture();
    let cache = Cache::open(&f.dir).unwrap();
    let path = cache.ensure_downloaded(&f.source).unwrap();
    overwrite(&path, &f.image[..1000]);

    let again = cache.ensure_downloaded(&f.source).unwrap();
    assert_eq!(fs::read(again).unwrap(), f.image);
    assert_eq!(f.server.requests().len(), 4);
}

#[test]
fn a_corrupted_cached_image_is_never_returned() {
    let f = fixture();
    let cache = Cache::open(&f.dir).unwrap();
    let path = cache.ensure_downloaded(&f.source).unwrap();
    // Same size, one bit flipped: only the hash can tell.
    let mut bytes = f.image.clone();
    bytes[IMAGE_LEN / 2] ^= 1;
    overwrite(&path, &bytes);

    let verdict = cache.verify(GENERICCLOUD).unwrap();
    assert_eq!(
        verdict,
        Verification::Mismatch {
            expected: sha512_hex(&f.image),
            actual: sha512_hex(&bytes)
        }
    );
    assert_eq!(cache.cached(GENERICCLOUD).unwrap(), None);
    // Deleted with its entry and origin, so nothing vouches for a file that is not there.
    assert_eq!(files(&f.dir), ["SHA512SUMS"]);
    assert_eq!(fs::read_to_string(f.dir.join("SHA512SUMS")).unwrap(), "");
    assert_eq!(cache.verify(GENERICCLOUD).unwrap(), Verification::Missing);
}

#[test]
fn an_image_file_without_an_entry_is_not_trusted() {
    let f = fixture();
    let cache = Cache::open(&f.dir).unwrap();
    fs::write(f.dir.join(GENERICCLOUD), &f.image).unwrap();
    assert_eq!(cache.verify(GENERICCLOUD).unwrap(), Verification::NoEntry);
    assert_eq!(cache.cached(GENERICCLOUD).unwrap(), None);
    assert!(!f.dir.join(GENERICCLOUD).exists());
}

#[test]
fn a_refused_connection_is_the_unreachable_variant() {
    // Bind then drop: nothing listens on this port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = TempDir::new().unwrap();
    let cache = Cache::open(Utf8Path::from_path(tmp.path()).unwrap()).unwrap();
    let source =
        DownloadSource::with_sums_beside(&format!("http://127.0.0.1:{port}/d/{GENERICCLOUD}"));

    let err = cache.ensure_downloaded(&source).unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    assert!(matches!(&err, CacheError::Unreachable { url, .. } if *url == source.sums_url));
}

#[test]
fn file_urls_and_plain_paths_work_as_sources() {
    let tmp = TempDir::new().unwrap();
    let root = Utf8Path::from_path(tmp.path()).unwrap();
    let mirror = root.join("mirror");
    fs::create_dir(&mirror).unwrap();
    let image = image_bytes(300_000, 7);
    fs::write(mirror.join(GENERICCLOUD), &image).unwrap();
    fs::write(
        mirror.join("SHA512SUMS"),
        sums_listing(GENERICCLOUD, &sha512_hex(&image)),
    )
    .unwrap();

    let by_url = DownloadSource::with_sums_beside(&format!("file://{mirror}/{GENERICCLOUD}"));
    let path = Cache::open(&root.join("a"))
        .unwrap()
        .ensure_downloaded(&by_url)
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), image);

    let by_path = DownloadSource::with_sums_beside(mirror.join(GENERICCLOUD).as_str());
    let cache = Cache::open(&root.join("b")).unwrap();
    let path = cache.ensure_downloaded(&by_path).unwrap();
    assert_eq!(fs::read(&path).unwrap(), image);
    let origin = cache.list().unwrap().remove(0).origin;
    assert_eq!(
        origin,
        Some(Origin::Downloaded {
            url: by_path.image_url.clone()
        })
    );

    let missing =
        DownloadSource::with_sums_beside(&format!("file://{root}/nowhere/{GENERICCLOUD}"));
    // `b` holds a verified image of that name, but from another URL: not handed out for this one.
    let err = cache.ensure_downloaded(&missing).unwrap_err();
    assert!(matches!(err, CacheError::NotFound { .. }), "{err}");
    assert_eq!(cache.cached_download(&missing).unwrap(), None);
    // The failed download took nothing away from the URL it came from.
    assert_eq!(cache.cached_download(&by_path).unwrap(), Some(path));
    let err = Cache::open(&root.join("c"))
        .unwrap()
        .ensure_downloaded(&missing)
        .unwrap_err();
    assert!(matches!(err, CacheError::NotFound { .. }), "{err}");
}

#[test]
fn concurrent_runs_download_once() {
    let f = fixture();
    // Stall mid-body so the other runs certainly arrive while the download is in flight.
    let pause: Arc<dyn Fn() + Send + Sync> =
        Arc::new(|| std::thread::sleep(Duration::from_millis(400)));
    f.server.route(
        IMAGE_PATH,
        Reply::Paused {
            body: f.image.clone(),
            at: IMAGE_LEN / 3,
            hook: pause,
        },
    );
    let shared = Cache::open(&f.dir).unwrap();
    let own = Cache::open(&f.dir).unwrap();
    let barrier = Barrier::new(3);

    let paths: Vec<Utf8PathBuf> = std::thread::scope(|s| {
        // Two threads share one `Cache` (the in-process lock state), one has its own (as
        // another process would): both kinds of contender must wait.
        let handles = [&shared, &shared, &own].map(|cache| {
            let (barrier, source) = (&barrier, &f.source);
            s.spawn(move || {
                barrier.wait();
                cache.ensure_downloaded(source).unwrap()
            })
        });
        handles.map(|h| h.join().unwrap()).into()
    });

    assert!(paths.iter().all(|p| *p == f.dir.join(GENERICCLOUD)));
    assert_eq!(
        f.server.requests(),
        [SUMS_PATH, IMAGE_PATH],
        "exactly one download"
    );
    assert_eq!(fs::read(&paths[0]).unwrap(), f.image);
}

#[test]
fn the_lock_is_reentrant_for_its_holder_and_exclusive_for_others() {
    let f = fixture();
    let cache = Cache::open(&f.dir).unwrap();
    let guard = cache.lock().unwrap();
    // Operations under a held lock (check, build, adopt) do not deadlock on it.
    assert_eq!(cache.cached(GENERICCLOUD).unwrap(), None);
    let other = Cache::open(&f.dir).unwrap();
    let waiter = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        drop(other.lock().unwrap());
        started.elapsed()
    });
    std::thread::sleep(Duration::from_millis(300));
    drop(guard);
    let waited = waiter.join().unwrap();
    assert!(
        waited >= Duration::from_millis(250),
        "did not wait: {waited:?}"
    );
}

#[test]
fn adopt_then_verify_then_list() {
    let tmp = TempDir::new().unwrap();
    let cache = Cache::open(Utf8Path::from_path(tmp.path()).unwrap()).unwrap();
    let scratch = cache.scratch_dir().unwrap();
    assert_eq!(scratch, cache.dir().join("tmp"));

    // As boma-golden leaves them: the image and its manifest named after the image's stem.
    let built = scratch.join(BUILT);
    let manifest = scratch.join("debian-13-boma-amd64.packages");
    fs::write(&built, image_bytes(200_000, 3)).unwrap();
    fs::write(&manifest, "linux-image-cloud-amd64 6.12\n").unwrap();
    let path = cache.adopt(&built, BUILT, &[&manifest]).unwrap();
    assert_eq!(path, cache.dir().join(BUILT));
    assert!(!built.exists() && !manifest.exists(), "moved, not copied");
    assert!(cache.image_path("debian-13-boma-amd64.packages").is_file());
    assert_eq!(cache.verify(BUILT).unwrap(), Verification::Ok);
    assert_eq!(cache.cached(BUILT).unwrap(), Some(path.clone()));

    // A second image built under a temporary name: it and its log take the image's name.
    // Then it is damaged on disk: listed as such, not hidden.
    let second = scratch.join("tmp-77.qcow2");
    let log = scratch.join("tmp-77.qcow2.log");
    fs::write(&second, image_bytes(1000, 4)).unwrap();
    fs::write(&log, "built\n").unwrap();
    let second_path = cache.adopt(&second, "second.qcow2", &[&log]).unwrap();
    overwrite(&second_path, b"truncated");

    let listing = serde_json::to_string_pretty(&cache.list().unwrap()).unwrap();
    let sums = fs::read_to_string(cache.dir().join("SHA512SUMS")).unwrap();
    insta::assert_snapshot!(
        "adopt_then_list",
        format!("{listing}\n--- SHA512SUMS ---\n{sums}")
    );

    // Adopting a rebuild replaces the image and drops the old manifest.
    let rebuilt = scratch.join("build-2.qcow2");
    fs::write(&rebuilt, image_bytes(200_000, 5)).unwrap();
    cache.adopt(&rebuilt, BUILT, &[]).unwrap();
    let image = cache
        .list()
        .unwrap()
        .into_iter()
        .find(|i| i.name == BUILT)
        .unwrap();
    assert_eq!(image.verification, Verification::Ok);
    assert_eq!(image.origin, Some(Origin::Built));
    assert!(image.sidecars.is_empty(), "{:?}", image.sidecars);
}

#[test]
fn adopt_refuses_what_it_cannot_place() {
    let tmp = TempDir::new().unwrap();
    let cache = Cache::open(Utf8Path::from_path(tmp.path()).unwrap()).unwrap();
    let scratch = cache.scratch_dir().unwrap();
    let built = scratch.join("b.qcow2");
    fs::write(&built, b"image").unwrap();
    let stray = scratch.join("notes.txt");
    fs::write(&stray, b"x").unwrap();

    let err = cache.adopt(&built, BUILT, &[&stray]).unwrap_err();
    assert!(
        err.to_string()
            .contains("a sidecar must be named after its image"),
        "{err}"
    );
    let err = cache
        .adopt(&scratch.join("absent.qcow2"), BUILT, &[])
        .unwrap_err();
    assert!(matches!(err, CacheError::Adopt { .. }), "{err}");
    let err = cache.adopt(&built, "../escape", &[]).unwrap_err();
    assert!(matches!(err, CacheError::InvalidName { .. }), "{err}");
    // Nothing was half-adopted.
    assert!(built.exists());
    assert_eq!(cache.list().unwrap(), []);
}

#[test]
fn error_messages_say_what_to_do() {
    let url = "https://mirror.example/images/debian-13-genericcloud-amd64.qcow2".to_owned();
    let sums_url = "https://mirror.example/images/SHA512SUMS".to_owned();
    let errors = [
        CacheError::Unreachable {
            url: url.clone(),
            source: ureq::Error::HostNotFound,
        },
        CacheError::NotFound { url: url.clone() },
        CacheError::HttpStatus {
            url: url.clone(),
            status: 503,
        },
        CacheError::Truncated {
            url: url.clone(),
            received: 100,
            expected: 200,
        },
        CacheError::BadSums {
            url: sums_url.clone(),
            reason: "line 1: expected `<128 hex digits>  <file name>`".into(),
        },
        CacheError::MissingEntry {
            name: GENERICCLOUD.into(),
            sums_url: sums_url.clone(),
        },
        CacheError::Mismatch {
            url,
            sums_url,
            expected: "ab12".into(),
            actual: "cd34".into(),
        },
        CacheError::Interrupted(boma_exec::interrupt::Interrupted { signal: 2 }),
    ];
    let text: String = errors.iter().map(|e| format!("{e}\n")).collect();
    insta::assert_snapshot!("error_messages", text);
}

#[test]
fn another_url_with_the_same_file_name_never_gets_the_old_image() {
    // Two publishers on loopback, each serving its own image under the same file name.
    let (first, second) = (Server::start(), Server::start());
    let (image_a, image_b) = (image_bytes(300_000, 21), image_bytes(300_000, 22));
    for (server, image) in [(&first, &image_a), (&second, &image_b)] {
        server.route(IMAGE_PATH, Reply::Body(image.clone()));
        server.route(
            SUMS_PATH,
            Reply::Body(sums_listing(GENERICCLOUD, &sha512_hex(image)).into_bytes()),
        );
    }
    let tmp = TempDir::new().unwrap();
    let cache = Cache::open(Utf8Path::from_path(tmp.path()).unwrap()).unwrap();
    let from_first = DownloadSource::with_sums_beside(&first.url(IMAGE_PATH));
    let from_second = DownloadSource::with_sums_beside(&second.url(IMAGE_PATH));

    let path = cache.ensure_downloaded(&from_first).unwrap();
    assert_eq!(fs::read(&path).unwrap(), image_a);
    let path = cache.ensure_downloaded(&from_second).unwrap();
    assert_eq!(
        sha512_hex(&fs::read(&path).unwrap()),
        sha512_hex(&image_b),
        "the second URL got the image fetched from the first"
    );
    assert_eq!(second.requests(), [SUMS_PATH, IMAGE_PATH]);
    assert_eq!(
        cache.list().unwrap()[0].origin,
        Some(Origin::Downloaded {
            url: from_second.image_url.clone()
        })
    );

    // Back to the first URL: its image again, fetched anew, not the second's.
    assert_eq!(cache.cached_download(&from_first).unwrap(), None);
    let path = cache.ensure_downloaded(&from_first).unwrap();
    assert_eq!(fs::read(&path).unwrap(), image_a);
    assert_eq!(first.requests().len(), 4);
    // And now it is reused for that URL without a request.
    cache.ensure_downloaded(&from_first).unwrap();
    assert_eq!(first.requests().len(), 4);
}

#[test]
fn a_download_replacing_a_built_image_of_that_name_drops_its_manifest() {
    let f = fixture();
    let cache = Cache::open(&f.dir).unwrap();
    let scratch = cache.scratch_dir().unwrap();
    let built = scratch.join("b.qcow2");
    let manifest = scratch.join("debian-13-genericcloud-amd64.packages");
    fs::write(&built, image_bytes(1000, 8)).unwrap();
    fs::write(&manifest, "linux-image-cloud-amd64 6.12\n").unwrap();
    cache.adopt(&built, GENERICCLOUD, &[&manifest]).unwrap();

    // A built image is no download from any URL: the download replaces it, manifest and all.
    let path = cache.ensure_downloaded(&f.source).unwrap();
    assert_eq!(fs::read(&path).unwrap(), f.image);
    let listed = cache.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].sidecars.is_empty(), "{:?}", listed[0].sidecars);
}
