//! Which golden image a run boots: a verified cached one, a download, a build, or a given file
//! — always with its digest, which the report records and the disk layers are keyed by.
//!
//! The choice is a pure plan ([`plan`]: the steps in order, [`ImageStep::golden`]: what the
//! report says of each); the machine's provisioner carries out one step at a time, and the
//! harness runs the plan (`boot::golden_image`), so the fallback chain is tested on the fake.
//! [`image_step`], [`build`] and [`pin`] are the real machine's side.

use boma_exec::progress::phase;
use boma_exec::say;
use boma_image::{BUILT, Cache, DownloadSource};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::Shell;

use crate::error::HarnessError;
use crate::settings::{ImageSource, Settings};

/// What the operator asked for, and where the cache is.
#[derive(Debug, Clone)]
pub struct ImageRequest {
    pub cache_dir: Utf8PathBuf,
    pub source: ImageSource,
    pub image_url: Option<String>,
    pub sums_url: Option<String>,
}

impl ImageRequest {
    pub fn from_settings(s: &Settings) -> ImageRequest {
        ImageRequest {
            cache_dir: s.cache_dir.clone(),
            source: s.image.clone(),
            image_url: s.image_url.clone(),
            sums_url: s.sums_url.clone(),
        }
    }
}

/// A verified golden image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Golden {
    pub path: Utf8PathBuf,
    /// Its SHA-512, hex.
    pub sha512: String,
    /// Where it came from, for the report: `cache`, `download <url>`, `build`, `file <path>`.
    pub origin: String,
}

/// The download source: Debian's cloud site unless the operator gave a mirror or a file.
pub fn source(r: &ImageRequest) -> DownloadSource {
    match (&r.image_url, &r.sums_url) {
        (Some(image), Some(sums)) => DownloadSource {
            image_url: image.clone(),
            sums_url: sums.clone(),
        },
        (Some(image), None) => DownloadSource::with_sums_beside(image),
        (None, _) => DownloadSource::debian_genericcloud(),
    }
}

/// One way of obtaining the golden image; [`plan`] orders them, the machine's provisioner
/// carries each out ([`image_step`] on the real machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageStep {
    /// The operator's file: it must exist and be a qcow2 image; it is hashed.
    Given(Utf8PathBuf),
    /// An image downloaded earlier from this source, verified in the cache. A download is
    /// reused only for the same URL: another mirror's image of the same file name is another
    /// image.
    CachedDownload(DownloadSource),
    /// An image built earlier, verified in the cache.
    CachedBuild,
    /// A download from this source into the cache, verified against its `SHA512SUMS`.
    Download(DownloadSource),
    /// A build from Debian packages, adopted into the cache.
    Build,
}

/// An image file a step found or made, with the digest it was verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    pub path: Utf8PathBuf,
    pub sha512: String,
}

/// What one step came to.
#[derive(Debug)]
pub enum StepResult {
    Found(ImageFile),
    /// The cache holds no such image: the plan goes on.
    NotCached,
    /// The download host cannot be reached at all (the error says how): the plan builds
    /// instead when it says so, else this is the run's error.
    Unreachable(HarnessError),
}

/// The steps that obtain the image the request asks for, in order. Pure.
///
/// `auto` takes a verified cached image (this source's download, else a built one), else
/// downloads, else — only when the download host cannot be reached — builds; `download`
/// downloads (a cached image of the same URL is the download); `build` reuses a built image,
/// else builds; a file is that file.
pub fn plan(request: &ImageRequest) -> Vec<ImageStep> {
    match &request.source {
        ImageSource::File(path) => vec![ImageStep::Given(path.clone())],
        ImageSource::Download => vec![ImageStep::Download(source(request))],
        ImageSource::Build => vec![ImageStep::CachedBuild, ImageStep::Build],
        ImageSource::Auto => vec![
            ImageStep::CachedDownload(source(request)),
            ImageStep::CachedBuild,
            ImageStep::Download(source(request)),
            ImageStep::Build,
        ],
    }
}

impl ImageStep {
    /// The golden image this step found as `file`, with where it came from for the report.
    /// Pure.
    pub fn golden(&self, file: ImageFile) -> Golden {
        let origin = match self {
            ImageStep::Given(_) => format!("file {}", file.path),
            ImageStep::CachedDownload(source) => {
                format!("cache (downloaded from {})", source.image_url)
            }
            ImageStep::CachedBuild => "cache (built)".to_owned(),
            ImageStep::Download(source) => format!("download {}", source.image_url),
            ImageStep::Build => "build".to_owned(),
        };
        Golden {
            path: file.path,
            sha512: file.sha512,
            origin,
        }
    }
}

/// Carry out `step` on this machine (the real side of the provisioner): look in the cache,
/// download, build, or hash a given file. Never returns an image that failed verification.
pub fn image_step(
    sh: &Shell,
    step: &ImageStep,
    cache_dir: &Utf8Path,
) -> Result<StepResult, HarnessError> {
    let cache = Cache::open(cache_dir)?;
    let verified = |path: Utf8PathBuf| -> Result<StepResult, HarnessError> {
        let sha512 = cache_digest(&cache, &path)?;
        Ok(StepResult::Found(ImageFile { path, sha512 }))
    };
    match step {
        ImageStep::Given(path) => given_file(sh, path).map(StepResult::Found),
        ImageStep::CachedDownload(source) => match cache.cached_download(source)? {
            Some(path) => verified(path),
            None => Ok(StepResult::NotCached),
        },
        ImageStep::CachedBuild => match cache.cached(BUILT)? {
            Some(path) => verified(path),
            None => Ok(StepResult::NotCached),
        },
        ImageStep::Download(source) => match cache.ensure_downloaded(source) {
            Ok(path) => verified(path),
            Err(e) if e.is_unreachable() => Ok(StepResult::Unreachable(e.into())),
            Err(e) => Err(e.into()),
        },
        ImageStep::Build => verified(build(sh, &cache)?),
    }
}

/// Pin the image for one run in `run_dir`: the run boots a file whose bytes were verified and
/// cannot change under it (a hard link to the read-only cache entry, re-hashed through the link;
/// a given file is copied and hashed on the way).
pub fn pin(
    golden: &Golden,
    run_dir: &Utf8Path,
    cache_dir: &Utf8Path,
) -> Result<Golden, HarnessError> {
    std::fs::create_dir_all(run_dir).map_err(|e| HarnessError::io(run_dir, e))?;
    let pinned = if golden.origin.starts_with("file ") {
        boma_image::pin_given(&golden.path, run_dir)?
    } else {
        Cache::open(cache_dir)?.pin(&golden.path, run_dir)?
    };
    if pinned.sha512 != golden.sha512 {
        return Err(HarnessError::Refused(format!(
            "{} changed between its verification and the boot (sha512 {}…, expected {}…): run again",
            golden.path,
            &pinned.sha512[..16],
            &golden.sha512[..16.min(golden.sha512.len())]
        )));
    }
    Ok(Golden {
        path: pinned.path,
        sha512: pinned.sha512,
        origin: golden.origin.clone(),
    })
}

/// The digest the cache verified the image against (its `SHA512SUMS` entry).
fn cache_digest(cache: &Cache, path: &Utf8Path) -> Result<String, HarnessError> {
    let sums_path = cache.dir().join("SHA512SUMS");
    let text = std::fs::read_to_string(&sums_path).map_err(|e| HarnessError::io(&sums_path, e))?;
    let sums = boma_image::parse_sums(&text).map_err(|e| {
        HarnessError::Refused(format!("{sums_path}: {e}; run `cargo xtask image verify`"))
    })?;
    let name = path.file_name().unwrap_or_default();
    sums.get(name).cloned().ok_or_else(|| {
        HarnessError::Refused(format!(
            "{sums_path} has no entry for {name}: run `cargo xtask image verify`"
        ))
    })
}

/// Build the golden image from Debian packages and adopt it into the cache.
pub fn build(sh: &Shell, cache: &Cache) -> Result<Utf8PathBuf, HarnessError> {
    boma_golden::preflight()?;
    let _lock = cache.lock()?;
    let step = phase("build the golden image from Debian packages");
    let scratch = cache.scratch_dir()?;
    let config = boma_golden::BuildConfig::trixie(&scratch);
    let built = step.close(boma_golden::build(sh, &config))?;
    let path = cache.adopt(&built.qcow2, BUILT, &[built.packages.as_path()])?;
    say!(
        "golden image: {path} (package versions in {})",
        cache.image_path(boma_golden::MANIFEST_FILE)
    );
    Ok(path)
}

/// An image file the operator gave: it must exist and be a qcow2 image; it is hashed so the
/// report says exactly what was booted.
fn given_file(sh: &Shell, path: &Utf8PathBuf) -> Result<ImageFile, HarnessError> {
    if !path.is_file() {
        return Err(HarnessError::Refused(format!(
            "the image file {path} does not exist: give the path of a qcow2 image, or --image auto"
        )));
    }
    let format = boma_vm::lifecycle::image_format(sh, path)?;
    if format != "qcow2" {
        return Err(HarnessError::Refused(format!(
            "the image file {path} is {format:?}, not qcow2: convert it with `qemu-img convert -O qcow2`"
        )));
    }
    let absolute = std::path::absolute(path)
        .ok()
        .and_then(|p| Utf8PathBuf::from_path_buf(p).ok())
        .unwrap_or(path.clone());
    let sha512 = boma_image::sha512_file(&absolute)?;
    Ok(ImageFile {
        path: absolute,
        sha512,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(source: ImageSource) -> ImageRequest {
        ImageRequest {
            cache_dir: "/var/lib/boma-integration".into(),
            source,
            image_url: Some("https://mirror.example/debian-13.qcow2".into()),
            sums_url: None,
        }
    }

    #[test]
    fn each_source_plans_its_steps_in_order() {
        let mirror = DownloadSource::with_sums_beside("https://mirror.example/debian-13.qcow2");
        assert_eq!(
            plan(&request(ImageSource::Auto)),
            [
                ImageStep::CachedDownload(mirror.clone()),
                ImageStep::CachedBuild,
                ImageStep::Download(mirror.clone()),
                ImageStep::Build
            ]
        );
        assert_eq!(
            plan(&request(ImageSource::Download)),
            [ImageStep::Download(mirror)]
        );
        assert_eq!(
            plan(&request(ImageSource::Build)),
            [ImageStep::CachedBuild, ImageStep::Build]
        );
        assert_eq!(
            plan(&request(ImageSource::File("/x/y.qcow2".into()))),
            [ImageStep::Given("/x/y.qcow2".into())]
        );
    }

    #[test]
    fn the_report_says_where_each_step_found_its_image() {
        let file = || ImageFile {
            path: "/cache/debian-13.qcow2".into(),
            sha512: "ab".repeat(64),
        };
        let steps = plan(&request(ImageSource::Auto));
        let origins: Vec<String> = steps.iter().map(|s| s.golden(file()).origin).collect();
        assert_eq!(
            origins,
            [
                "cache (downloaded from https://mirror.example/debian-13.qcow2)",
                "cache (built)",
                "download https://mirror.example/debian-13.qcow2",
                "build"
            ]
        );
        assert_eq!(
            ImageStep::Given("y.qcow2".into()).golden(file()).origin,
            "file /cache/debian-13.qcow2"
        );
    }
}
