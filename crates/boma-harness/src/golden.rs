//! Which golden image a run boots: a verified cached one, a download, a build, or a given file.

use boma_exec::progress::phase;
use boma_image::{BUILT, Cache, GENERICCLOUD, Source};
use camino::Utf8PathBuf;
use xshell::Shell;

use crate::{HarnessError, ImageSource, Settings};

/// The download source: Debian's cloud site unless the operator gave a mirror or a file.
pub fn source(s: &Settings) -> Source {
    match (&s.image_url, &s.sums_url) {
        (Some(image), Some(sums)) => Source {
            image_url: image.clone(),
            sums_url: sums.clone(),
        },
        (Some(image), None) => Source::with_sums_beside(image),
        (None, _) => Source::debian_genericcloud(),
    }
}

/// The golden image to boot, obtained as the settings say. Never returns an image that failed
/// verification.
pub fn resolve(sh: &Shell, settings: &Settings) -> Result<Utf8PathBuf, HarnessError> {
    let cache = Cache::open(&settings.cache_dir)?;
    match &settings.image {
        ImageSource::File(path) => given_file(sh, path),
        ImageSource::Download => Ok(cache.ensure_downloaded(&source(settings))?),
        ImageSource::Build => match cache.cached(BUILT)? {
            Some(path) => Ok(path),
            None => build(sh, &cache),
        },
        ImageSource::Auto => {
            let _lock = cache.lock()?;
            for name in [GENERICCLOUD, BUILT] {
                if let Some(path) = cache.cached(name)? {
                    return Ok(path);
                }
            }
            match cache.ensure_downloaded(&source(settings)) {
                Ok(path) => Ok(path),
                Err(e) if e.is_unreachable() => {
                    eprintln!(
                        "the image download host cannot be reached ({e}); building the golden image from Debian packages instead"
                    );
                    build(sh, &cache)
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Build the golden image from Debian packages and adopt it into the cache.
pub fn build(sh: &Shell, cache: &Cache) -> Result<Utf8PathBuf, HarnessError> {
    boma_golden::preflight()?;
    let _lock = cache.lock()?;
    let step = phase("build the golden image from Debian packages");
    let scratch = cache.scratch_dir()?;
    let config = boma_golden::BuildConfig::trixie(&scratch);
    let built = match boma_golden::build(sh, &config) {
        Ok(built) => built,
        Err(e) => {
            step.failed();
            return Err(e.into());
        }
    };
    let path = cache.adopt(&built.qcow2, BUILT, &[built.packages.as_path()])?;
    step.done();
    eprintln!(
        "golden image: {path} (package versions in {})",
        cache.image_path(boma_golden::MANIFEST_FILE)
    );
    Ok(path)
}

/// An image file the operator gave: it must exist and be a qcow2 image.
fn given_file(sh: &Shell, path: &Utf8PathBuf) -> Result<Utf8PathBuf, HarnessError> {
    if !path.is_file() {
        return Err(HarnessError::Usage(format!(
            "the image file {path} does not exist"
        )));
    }
    let format = boma_vm::lifecycle::image_format(sh, path)?;
    if format != "qcow2" {
        return Err(HarnessError::Usage(format!(
            "the image file {path} is {format:?}, not qcow2"
        )));
    }
    Ok(std::path::absolute(path)
        .ok()
        .and_then(|p| Utf8PathBuf::from_path_buf(p).ok())
        .unwrap_or(path.clone()))
}
