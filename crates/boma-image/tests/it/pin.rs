//! Pinning: what a run boots stays what was verified, whatever happens to the cache entry or to
//! the operator's file afterwards.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use crate::support::{Reply, Server, image_bytes, sha512_hex, sums_listing};
use boma_image::{
    Cache, CacheError, DownloadSource, GENERICCLOUD, PINNED_IMAGE, Verification, pin_given,
};
use camino::{Utf8Path, Utf8PathBuf};
use tempfile::TempDir;

const IMAGE_PATH: &str = "/images/debian-13-genericcloud-amd64.qcow2";

/// A server publishing `image` as the genericcloud image, and the source that fetches it.
fn publish(image: &[u8]) -> (Server, DownloadSource) {
    let server = Server::start();
    server.route(IMAGE_PATH, Reply::Body(image.to_vec()));
    server.route(
        "/images/SHA512SUMS",
        Reply::Body(sums_listing(GENERICCLOUD, &sha512_hex(image)).into_bytes()),
    );
    let source = DownloadSource::with_sums_beside(&server.url(IMAGE_PATH));
    (server, source)
}

fn dirs() -> (TempDir, Utf8PathBuf, Utf8PathBuf) {
    let tmp = TempDir::new().unwrap();
    let root = Utf8Path::from_path(tmp.path()).unwrap().to_owned();
    (tmp, root.join("cache"), root.join("run/boma-it-1"))
}

#[test]
fn a_pinned_image_keeps_its_bytes_when_the_cache_entry_is_replaced() {
    let (_tmp, cache_dir, run_dir) = dirs();
    let (old, new) = (image_bytes(400_000, 31), image_bytes(400_000, 32));
    let (_first, from_first) = publish(&old);
    let (_second, from_second) = publish(&new);
    let cache = Cache::open(&cache_dir).unwrap();
    let cached = cache.ensure_downloaded(&from_first).unwrap();

    let pinned = cache.pin(&cached, &run_dir).unwrap();
    assert_eq!(pinned.path, run_dir.join(PINNED_IMAGE));
    assert_eq!(pinned.sha512, sha512_hex(&old));
    // A hard link on the same filesystem: the very inode that was verified.
    assert_eq!(
        pinned.path.metadata().unwrap().ino(),
        cached.metadata().unwrap().ino()
    );

    // Another run downloads a different image of the same name: renamed over the entry.
    let replaced = cache.ensure_downloaded(&from_second).unwrap();
    assert_eq!(replaced, cached);
    assert_eq!(sha512_hex(&fs::read(&cached).unwrap()), sha512_hex(&new));
    // The pin did not move with it.
    assert_eq!(sha512_hex(&fs::read(&pinned.path).unwrap()), pinned.sha512);

    // Nor does deleting the entry touch it.
    assert_eq!(cache.verify(GENERICCLOUD).unwrap(), Verification::Ok);
    fs::remove_file(&cached).unwrap();
    assert_eq!(fs::read(&pinned.path).unwrap(), old);
}

#[test]
fn an_entry_that_changed_after_verification_is_not_pinned() {
    let (_tmp, cache_dir, run_dir) = dirs();
    let image = image_bytes(200_000, 33);
    let (_server, source) = publish(&image);
    let cache = Cache::open(&cache_dir).unwrap();
    let cached = cache.ensure_downloaded(&source).unwrap();
    // Written in place after the check (only root could: the entry is read-only).
    fs::set_permissions(&cached, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = image.clone();
    bytes[1000] ^= 1;
    fs::write(&cached, &bytes).unwrap();

    let err = cache.pin(&cached, &run_dir).unwrap_err();
    let CacheError::PinMismatch {
        expected, actual, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(
        (expected, actual),
        (&sha512_hex(&image), &sha512_hex(&bytes))
    );
    assert!(!run_dir.join(PINNED_IMAGE).exists());
    assert_eq!(fs::read_dir(&run_dir).unwrap().count(), 0, "a leftover");
}

#[test]
fn only_the_caches_own_images_are_pinned() {
    let (_tmp, cache_dir, run_dir) = dirs();
    let cache = Cache::open(&cache_dir).unwrap();
    let stray = cache_dir.parent().unwrap().join(GENERICCLOUD);
    fs::write(&stray, b"not from the cache").unwrap();
    let err = cache.pin(&stray, &run_dir).unwrap_err();
    assert!(
        err.to_string().contains("is not an image of the cache"),
        "{err}"
    );

    // In the cache directory but never verified into it.
    fs::write(cache_dir.join(GENERICCLOUD), b"dropped in").unwrap();
    let err = cache
        .pin(&cache_dir.join(GENERICCLOUD), &run_dir)
        .unwrap_err();
    assert!(err.to_string().contains("has no entry"), "{err}");
    assert!(!run_dir.join(PINNED_IMAGE).exists());
}

#[test]
fn a_given_image_is_copied_read_only_with_the_digest_of_what_boots() {
    let (_tmp, _cache_dir, run_dir) = dirs();
    let given = run_dir.parent().unwrap().join("my-image.qcow2");
    fs::create_dir_all(given.parent().unwrap()).unwrap();
    let image = image_bytes(300_000, 34);
    fs::write(&given, &image).unwrap();

    let pinned = pin_given(&given, &run_dir).unwrap();
    assert_eq!(pinned.path, run_dir.join(PINNED_IMAGE));
    assert_eq!(pinned.sha512, sha512_hex(&image));
    assert_eq!(
        pinned.path.metadata().unwrap().permissions().mode() & 0o777,
        0o444
    );

    // The operator's file is theirs to change; the run keeps what it hashed.
    fs::write(&given, b"edited afterwards").unwrap();
    assert_eq!(fs::read(&pinned.path).unwrap(), image);

    // Pinning again (a retried step) replaces the run's pin.
    let again = pin_given(&given, &run_dir).unwrap();
    assert_eq!(again.sha512, sha512_hex(b"edited afterwards"));

    let err = pin_given(&run_dir, &run_dir).unwrap_err();
    assert!(err.to_string().contains("it is not a file"), "{err}");
}
