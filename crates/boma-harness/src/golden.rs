//! Which golden image a run boots: a verified cached one, a download, a build, or a given file
//! — always with its digest, which the report records and the disk layers are keyed by.

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

/// The golden image to boot, obtained as the request says. Never returns an image that failed
/// verification.
pub fn resolve(sh: &Shell, r: &ImageRequest) -> Result<Golden, HarnessError> {
    let cache = Cache::open(&r.cache_dir)?;
    let cached = |path: Utf8PathBuf, origin: &str| -> Result<Golden, HarnessError> {
        let sha512 = cache_digest(&cache, &path)?;
        Ok(Golden {
            path,
            sha512,
            origin: origin.to_owned(),
        })
    };
    match &r.source {
        ImageSource::File(path) => given_file(sh, path),
        ImageSource::Download => {
            let source = source(r);
            let path = cache.ensure_downloaded(&source)?;
            cached(path, &format!("download {}", source.image_url))
        }
        ImageSource::Build => match cache.cached(BUILT)? {
            Some(path) => cached(path, "cache (built)"),
            None => cached(build(sh, &cache)?, "build"),
        },
        ImageSource::Auto => {
            let source = source(r);
            // A download is reused only for the same URL: another mirror's image of the same
            // file name is another image.
            if let Some(path) = cache.cached_download(&source)? {
                return cached(
                    path,
                    &format!("cache (downloaded from {})", source.image_url),
                );
            }
            if let Some(path) = cache.cached(BUILT)? {
                return cached(path, "cache (built)");
            }
            match cache.ensure_downloaded(&source) {
                Ok(path) => cached(path, &format!("download {}", source.image_url)),
                Err(e) if e.is_unreachable() => {
                    say!(
                        "the image download host cannot be reached ({e}); building the golden image from Debian packages instead"
                    );
                    cached(build(sh, &cache)?, "build")
                }
                Err(e) => Err(e.into()),
            }
        }
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
fn given_file(sh: &Shell, path: &Utf8PathBuf) -> Result<Golden, HarnessError> {
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
    Ok(Golden {
        origin: format!("file {absolute}"),
        path: absolute,
        sha512,
    })
}
