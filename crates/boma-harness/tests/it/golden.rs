//! The golden image's plan, run by the harness against the fake machine: each step the machine
//! carries out is recorded, so the fallback chain (cache → download → build) is tested here,
//! not only on a real machine.

use boma_harness::golden::ImageStep;
use boma_harness::{ExitClass, ImageSource};
use boma_image::DownloadSource;

use crate::support::{FakeDownload, FakeImages, Rig, UNREACHABLE, serial};

fn debian() -> DownloadSource {
    DownloadSource::debian_genericcloud()
}

/// A rig whose image cache and download host are as `images` says, asked for `source`.
fn rig(images: FakeImages, source: ImageSource) -> Rig {
    let mut rig = Rig::new();
    rig.machine.images.set(images);
    rig.sandbox.settings.image = source;
    rig
}

const EMPTY_CACHE: FakeImages = FakeImages {
    cached_download: false,
    cached_build: false,
    download: FakeDownload::Succeeds,
};

#[test]
fn auto_boots_a_cached_download_and_asks_for_nothing_more() {
    let _serial = serial();
    let rig = Rig::new();
    let outcome = rig.it();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(
        *rig.machine.image_steps.borrow(),
        [ImageStep::CachedDownload(debian())]
    );
    assert_eq!(
        outcome.report.image.unwrap().origin,
        format!("cache (downloaded from {})", debian().image_url)
    );
}

#[test]
fn auto_takes_a_built_image_from_the_cache_before_downloading() {
    let _serial = serial();
    let rig = rig(
        FakeImages {
            cached_build: true,
            ..EMPTY_CACHE
        },
        ImageSource::Auto,
    );
    let outcome = rig.it();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(
        *rig.machine.image_steps.borrow(),
        [ImageStep::CachedDownload(debian()), ImageStep::CachedBuild]
    );
    assert_eq!(outcome.report.image.unwrap().origin, "cache (built)");
}

#[test]
fn auto_builds_when_nothing_is_cached_and_the_download_host_cannot_be_reached() {
    let _serial = serial();
    let rig = rig(
        FakeImages {
            download: FakeDownload::Unreachable,
            ..EMPTY_CACHE
        },
        ImageSource::Auto,
    );
    let outcome = rig.it();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(
        *rig.machine.image_steps.borrow(),
        [
            ImageStep::CachedDownload(debian()),
            ImageStep::CachedBuild,
            ImageStep::Download(debian()),
            ImageStep::Build
        ]
    );
    assert_eq!(outcome.report.image.unwrap().origin, "build");
}

/// A host that answers with an error is no reason to build: the URL or the mirror is wrong,
/// and a build would hide it.
#[test]
fn auto_does_not_build_when_the_download_host_answers_with_an_error() {
    let _serial = serial();
    let rig = rig(
        FakeImages {
            download: FakeDownload::Fails,
            ..EMPTY_CACHE
        },
        ImageSource::Auto,
    );
    let outcome = rig.it();
    let error = outcome.error.expect("the download failed");
    assert!(error.to_string().contains("answered HTTP 503"), "{error}");
    assert_eq!(
        rig.machine.image_steps.borrow().last(),
        Some(&ImageStep::Download(debian()))
    );
    assert!(rig.machine.world.borrow().booted.is_empty());
}

#[test]
fn download_never_builds_even_when_the_host_cannot_be_reached() {
    let _serial = serial();
    let rig = rig(
        FakeImages {
            download: FakeDownload::Unreachable,
            ..FakeImages::default()
        },
        ImageSource::Download,
    );
    let outcome = rig.it();
    let error = outcome.error.expect("nothing to boot");
    assert!(error.to_string().contains(UNREACHABLE), "{error}");
    assert_eq!(error.class(), ExitClass::Failed, "{error}");
    assert_eq!(
        *rig.machine.image_steps.borrow(),
        [ImageStep::Download(debian())],
        "a cached image is not a download, and nothing is built"
    );
    assert!(rig.machine.world.borrow().booted.is_empty());
}

#[test]
fn build_reuses_a_built_image_and_builds_only_without_one() {
    let _serial = serial();
    let cached = rig(
        FakeImages {
            cached_build: true,
            ..EMPTY_CACHE
        },
        ImageSource::Build,
    );
    let outcome = cached.it();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(
        *cached.machine.image_steps.borrow(),
        [ImageStep::CachedBuild]
    );
    let fresh = rig(EMPTY_CACHE, ImageSource::Build);
    let outcome = fresh.it();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(
        *fresh.machine.image_steps.borrow(),
        [ImageStep::CachedBuild, ImageStep::Build]
    );
    assert_eq!(outcome.report.image.unwrap().origin, "build");
}

#[test]
fn a_given_file_is_the_only_image_asked_for() {
    let _serial = serial();
    let rig = Rig::new();
    let given = rig.sandbox.golden();
    let mut rig = rig;
    rig.sandbox.settings.image = ImageSource::File(given.clone());
    let outcome = rig.it();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(
        *rig.machine.image_steps.borrow(),
        [ImageStep::Given(given.clone())]
    );
    assert_eq!(
        outcome.report.image.unwrap().origin,
        format!("file {given}")
    );
}
