//! The cache directory: its lock, its own `SHA512SUMS`, and the operations that keep both honest.
//!
//! Layout of `<dir>`:
//! - `<name>`: an image, listed in `SHA512SUMS`, read-only (0444); never used without
//!   re-hashing it first
//! - `SHA512SUMS`: `sha512sum` format, one entry per cached image (`sha512sum -c` works)
//! - `<name>.origin`: JSON, where the image came from (downloaded from a URL, or built); a
//!   download is reused only for the same URL
//! - `<name>.<anything>`: sidecars that belong to the image (e.g. `.packages`)
//! - `<name>.part`: a download in progress; never trusted after a crash
//! - `tmp/`: scratch space on the same filesystem, so built images move in by rename
//! - `.lock`: `flock`ed while a run works on the cache (the kernel drops it if the run dies)

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::marker::PhantomData;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use boma_exec::{interrupt, say};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::error::io_err;
use crate::fetch::{self, hash_file};
use crate::files::remove_if_present;
use crate::layout::{CACHE_SUMS, LOCK, ORIGIN, PART, SCRATCH, check_name};
use crate::pin::{PinnedImage, pin_file};
use crate::progress::mib;
use crate::sums::{parse_sums, render_sums};
use crate::{CacheError, DownloadSource};

/// An image in the cache is read-only: replaced by rename, never written in place, so a file a
/// run has pinned (hard-linked) keeps the bytes that were verified.
const IMAGE_MODE: u32 = 0o444;
/// How often a waiting run retries the lock (and checks for Ctrl-C).
const LOCK_POLL: Duration = Duration::from_millis(100);

/// A directory of verified images. See the module docs for the layout.
///
/// Every operation takes the cache lock for its duration. The lock is re-entrant within one
/// thread of one `Cache`, so a caller can hold [`Cache::lock`] across several operations (check,
/// build, adopt) without another run slipping in between.
#[derive(Debug)]
pub struct Cache {
    dir: Utf8PathBuf,
    held: Mutex<Held>,
}

/// Who holds the flock through this `Cache`, and how many guards are live.
#[derive(Debug, Default)]
struct Held {
    owner: Option<ThreadId>,
    depth: usize,
    file: Option<File>,
}

/// Proof that this thread holds the cache lock; dropping the last guard releases it.
#[derive(Debug)]
pub struct CacheLock<'a> {
    cache: &'a Cache,
    /// The lock is owned by a thread: the guard must not move to another one.
    _not_send: PhantomData<*const ()>,
}

/// The result of re-hashing a cached image against the cache's `SHA512SUMS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verification {
    /// The file hashes to its entry.
    Ok,
    /// The file exists but does not match: truncated or corrupted.
    Mismatch { expected: String, actual: String },
    /// The file exists but `SHA512SUMS` has no entry for it, so it cannot be trusted.
    NoEntry,
    /// There is no such file.
    Missing,
}

/// Where a cached image came from, kept in `<name>.origin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    Downloaded { url: String },
    Built,
}

/// One entry of [`Cache::list`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CachedImage {
    pub name: String,
    /// `None` when the file is missing.
    pub size: Option<u64>,
    pub verification: Verification,
    /// `None` when the `.origin` sidecar is missing or unreadable.
    pub origin: Option<Origin>,
    /// File names (in the cache directory) of the files that belong to this image.
    pub sidecars: Vec<String>,
}

impl Cache {
    /// Open (creating if needed) the cache in `dir`.
    pub fn open(dir: &Utf8Path) -> Result<Cache, CacheError> {
        fs::create_dir_all(dir).map_err(io_err("create the cache directory", dir))?;
        Ok(Cache {
            dir: dir.to_owned(),
            held: Mutex::default(),
        })
    }

    pub fn dir(&self) -> &Utf8Path {
        &self.dir
    }

    /// Where the image `name` lives in the cache (whether or not it is there).
    pub fn image_path(&self, name: &str) -> Utf8PathBuf {
        self.dir.join(name)
    }

    /// Take the exclusive cache lock, waiting (and saying so, once) while another run holds it.
    /// Ctrl-C while waiting returns [`CacheError::Interrupted`].
    pub fn lock(&self) -> Result<CacheLock<'_>, CacheError> {
        let me = thread::current().id();
        // The guard is made only once the lock is ours: its Drop releases what it counts.
        let guard = || CacheLock {
            cache: self,
            _not_send: PhantomData,
        };
        {
            let mut held = self.held();
            if held.owner == Some(me) {
                held.depth += 1;
                return Ok(guard());
            }
        }
        // A fresh open file description per acquisition: flock conflicts between descriptions,
        // so this also excludes other threads of this process, not only other processes.
        let path = self.dir.join(LOCK);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open the lock file", &path))?;
        let mut said = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {
                    if !said {
                        say!("waiting for another boma run holding {path}");
                        said = true;
                    }
                    // Polling rather than a blocking flock keeps Ctrl-C effective while waiting.
                    interrupt::sleep(LOCK_POLL)?;
                }
                Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &path)(e)),
            }
        }
        *self.held() = Held {
            owner: Some(me),
            depth: 1,
            file: Some(file),
        };
        Ok(guard())
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        // A panic while holding the mutex leaves only counters behind: still usable.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The verified cached image for `source`, or a fresh download of it.
    ///
    /// Only an image downloaded from `source.image_url` itself is reused (see
    /// [`Cache::cached_download`]); one of the same file name from another URL, or built, is
    /// replaced by the download, sidecars and all.
    ///
    /// The checksum file is fetched first: an image it does not vouch for is never downloaded.
    /// The image streams into `<name>.part` (a leftover one is discarded: a resumed download
    /// would have to be re-hashed whole anyway, and restarting is simpler to trust), is hashed on
    /// the way, and only a match is fsynced and renamed into place.
    pub fn ensure_downloaded(&self, source: &DownloadSource) -> Result<Utf8PathBuf, CacheError> {
        let name = source.file_name()?;
        let _lock = self.lock()?;
        if let Some(path) = self.cached_download(source)? {
            return Ok(path);
        }
        let agent = fetch::agent();
        let sums_url = &source.sums_url;
        let text = fetch::fetch_text(&agent, sums_url)?;
        let sums = parse_sums(&text).map_err(|e| CacheError::BadSums {
            url: sums_url.clone(),
            reason: e.to_string(),
        })?;
        let expected = sums.get(name).ok_or_else(|| CacheError::MissingEntry {
            name: name.to_owned(),
            sums_url: sums_url.clone(),
        })?;

        let part = self.dir.join(format!("{name}{PART}"));
        if part.exists() {
            say!("discarding {part}: a partial download from an earlier run is never trusted");
            remove_if_present(&part)?;
        }
        let staged = self.stage_download(&agent, source, name, expected, &part);
        let fetched = match staged {
            Ok(fetched) => fetched,
            Err(e) => {
                discard_part(&part);
                return Err(e);
            }
        };
        let origin = Origin::Downloaded {
            url: source.image_url.clone(),
        };
        // The image being replaced (from another URL, or built) takes its sidecars with it.
        let replaced = self.discard_sidecars(name);
        if let Err(e) = replaced.and_then(|()| self.commit(name, &part, expected, &origin)) {
            discard_part(&part);
            return Err(e);
        }
        say!(
            "fetched {name}: {} in {:.1} s, sha512 ok",
            mib(fetched.bytes),
            fetched.elapsed.as_secs_f64()
        );
        Ok(self.image_path(name))
    }

    /// The verified cached image downloaded from `source.image_url`, or `None`.
    ///
    /// The cache holds one image per file name, so the name alone does not say where an image
    /// came from: `<name>.origin` does. An image of that name fetched from another URL, built
    /// here, or without a readable origin is not the one asked for, and is left for
    /// [`Cache::ensure_downloaded`] to replace.
    pub fn cached_download(
        &self,
        source: &DownloadSource,
    ) -> Result<Option<Utf8PathBuf>, CacheError> {
        let name = source.file_name()?;
        let _lock = self.lock()?;
        let wanted = Origin::Downloaded {
            url: source.image_url.clone(),
        };
        if self.read_origin(name).as_ref() != Some(&wanted) {
            return Ok(None);
        }
        self.cached(name)
    }

    /// Download into `part` and check it against `expected`; the caller deletes `part` on error.
    fn stage_download(
        &self,
        agent: &ureq::Agent,
        source: &DownloadSource,
        name: &str,
        expected: &str,
        part: &Utf8Path,
    ) -> Result<fetch::Fetched, CacheError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(part)
            .map_err(io_err("create", part))?;
        let fetched = fetch::fetch_into(agent, &source.image_url, name, &mut file, part)?;
        if fetched.sha512 != expected {
            return Err(CacheError::Mismatch {
                url: source.image_url.clone(),
                sums_url: source.sums_url.clone(),
                expected: expected.to_owned(),
                actual: fetched.sha512,
            });
        }
        file.sync_all().map_err(io_err("fsync", part))?;
        Ok(fetched)
    }

    /// The cached image `name` after re-hashing it, or `None`. A file that fails verification
    /// is deleted (with its entry and sidecars), saying so on stderr: it is never returned.
    pub fn cached(&self, name: &str) -> Result<Option<Utf8PathBuf>, CacheError> {
        let _lock = self.lock()?;
        let started = Instant::now();
        let verdict = self.verify(name)?;
        match &verdict {
            Verification::Ok => {
                say!(
                    "using cached {name}: sha512 ok (verified in {:.1} s)",
                    started.elapsed().as_secs_f64()
                );
                return Ok(Some(self.image_path(name)));
            }
            Verification::Missing => {}
            Verification::NoEntry => say!(
                "cached {name} has no entry in {}, so it cannot be verified: deleting it",
                self.dir.join(CACHE_SUMS)
            ),
            Verification::Mismatch { expected, actual } => say!(
                "cached {name} is corrupt (sha512 {}…, expected {}…): deleting it",
                &actual[..16],
                &expected[..16]
            ),
        }
        // Whatever is left around a missing or bad image (entry, origin, sidecars) describes
        // a file we no longer have.
        self.discard(name)?;
        Ok(None)
    }

    /// Re-hash the cached image `name` and compare it with the cache's `SHA512SUMS`.
    pub fn verify(&self, name: &str) -> Result<Verification, CacheError> {
        check_name(name).map_err(|reason| CacheError::InvalidName {
            name: name.to_owned(),
            reason,
        })?;
        let _lock = self.lock()?;
        let path = self.image_path(name);
        if !path.is_file() {
            return Ok(Verification::Missing);
        }
        let Some(expected) = self.read_sums()?.remove(name) else {
            return Ok(Verification::NoEntry);
        };
        let (actual, _) = hash_file(&path)?;
        Ok(if actual == expected {
            Verification::Ok
        } else {
            Verification::Mismatch { expected, actual }
        })
    }

    /// Move a freshly built image (and its sidecars) into the cache as `name`, replacing any
    /// previous image of that name and its sidecars.
    ///
    /// `built` must be on the cache's filesystem (build it under [`Cache::scratch_dir`]) so the
    /// move is an atomic rename. A sidecar is named after its image, by full name or stem
    /// (`debian-13-boma-amd64.qcow2.packages` or `debian-13-boma-amd64.packages`) and keeps its
    /// file name; one named after the built file instead (`build-1.qcow2.packages`) is renamed
    /// to match `name`.
    pub fn adopt(
        &self,
        built: &Utf8Path,
        name: &str,
        sidecars: &[&Utf8Path],
    ) -> Result<Utf8PathBuf, CacheError> {
        check_name(name).map_err(|reason| CacheError::InvalidName {
            name: name.to_owned(),
            reason,
        })?;
        let adopt_err = |path: &Utf8Path, reason: String| CacheError::Adopt {
            path: path.to_owned(),
            reason,
        };
        let _lock = self.lock()?;
        if !built.is_file() {
            return Err(adopt_err(built, "it is not a file".to_owned()));
        }
        let dest = self.image_path(name);
        if same_file(built, &dest) {
            return Err(adopt_err(
                built,
                "it already is the cached image".to_owned(),
            ));
        }
        let built_name = built.file_name().unwrap_or_default();
        let sums = self.read_sums()?;
        let mut moves = Vec::new();
        for &sidecar in sidecars {
            let file_name = sidecar.file_name().unwrap_or_default();
            let dest = sidecar_dest(file_name, name, built_name)
                .filter(|dest| !sums.contains_key(dest))
                .ok_or_else(|| {
                    let reason = format!(
                        "a sidecar must be named after its image (start with `{}`) or after \
                         the built file (`{}`), and must not end in {PART} or {ORIGIN}",
                        prefixes(name).join("` or `"),
                        prefixes(built_name).join("` or `"),
                    );
                    adopt_err(sidecar, reason)
                })?;
            if !sidecar.is_file() {
                return Err(adopt_err(sidecar, "it is not a file".to_owned()));
            }
            // Replacing `name` deletes its old sidecars first, which must not include these.
            if sidecar
                .parent()
                .is_some_and(|parent| same_file(parent, &self.dir))
            {
                let reason = "it is already in the cache directory: write it in scratch_dir()";
                return Err(adopt_err(sidecar, reason.to_owned()));
            }
            moves.push((sidecar, self.dir.join(dest)));
        }

        let (sha512, size) = hash_file(built)?;
        // The builder wrote these files; make them durable before the renames publish them.
        for path in std::iter::once(built).chain(moves.iter().map(|(from, _)| *from)) {
            File::open(path)
                .and_then(|f| f.sync_all())
                .map_err(io_err("fsync", path))?;
        }
        // The old image's sidecars (a package manifest) describe another image: drop them.
        self.discard(name)?;
        for (from, to) in &moves {
            rename_into(from, to)?;
        }
        self.commit(name, built, &sha512, &Origin::Built)?;
        say!("adopted {name}: {}, sha512 {}…", mib(size), &sha512[..16]);
        Ok(dest)
    }

    /// Pin the verified cached image at `image` (a path this cache returned) for one run, so
    /// that what QEMU opens is what was verified.
    ///
    /// The image is hard-linked into `run_dir` as [`crate::PINNED_IMAGE`]: the link is the same
    /// inode, so a later rename over the cache entry (a new download, a rebuild) or its deletion
    /// cannot change it, and cache images are never written in place. Across filesystems it is
    /// copied instead. Either way it is hashed again through the pinned path and compared with
    /// the cache's `SHA512SUMS`; a mismatch deletes the pin and fails. The returned digest is
    /// the one to report.
    pub fn pin(&self, image: &Utf8Path, run_dir: &Utf8Path) -> Result<PinnedImage, CacheError> {
        let pin_err = |reason: &str| CacheError::Pin {
            path: image.to_owned(),
            reason: reason.to_owned(),
        };
        let name = image
            .file_name()
            .ok_or_else(|| pin_err("it names no file"))?;
        check_name(name).map_err(|reason| pin_err(&reason))?;
        let in_cache = image
            .parent()
            .is_some_and(|parent| same_file(parent, &self.dir));
        if !in_cache {
            return Err(pin_err(&format!(
                "it is not an image of the cache {}: pin only what the cache returned",
                self.dir
            )));
        }
        // Held until the link exists: no other run may replace the entry in between.
        let _lock = self.lock()?;
        let expected = self.read_sums()?.remove(name).ok_or_else(|| {
            pin_err("the cache's SHA512SUMS has no entry for it: get it from the cache again")
        })?;
        let pinned = pin_file(image, run_dir)?;
        if pinned.sha512 != expected {
            remove_if_present(&pinned.path)?;
            return Err(CacheError::PinMismatch {
                path: image.to_owned(),
                expected,
                actual: pinned.sha512,
            });
        }
        Ok(pinned)
    }

    /// `<dir>/tmp`, created if missing: build images here so [`Cache::adopt`] can rename them.
    pub fn scratch_dir(&self) -> Result<Utf8PathBuf, CacheError> {
        let scratch = self.dir.join(SCRATCH);
        fs::create_dir_all(&scratch).map_err(io_err("create", &scratch))?;
        Ok(scratch)
    }

    /// Every image listed in the cache's `SHA512SUMS`, re-hashed, with origin and sidecars.
    pub fn list(&self) -> Result<Vec<CachedImage>, CacheError> {
        let _lock = self.lock()?;
        let sums = self.read_sums()?;
        let mut images = Vec::new();
        for name in sums.keys() {
            let path = self.image_path(name);
            let size = path
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len());
            images.push(CachedImage {
                name: name.clone(),
                size,
                verification: self.verify(name)?,
                origin: self.read_origin(name),
                sidecars: self.sidecars(name, &sums)?,
            });
        }
        Ok(images)
    }

    /// Publish a verified file as `name`: origin, then the checksum entry, then the rename.
    /// A crash between steps leaves an image that fails verification, never a trusted bad one.
    fn commit(
        &self,
        name: &str,
        staged: &Utf8Path,
        sha512: &str,
        origin: &Origin,
    ) -> Result<(), CacheError> {
        let origin_json = serde_json::to_string_pretty(origin).expect("an origin serialises");
        let origin_path = self.dir.join(format!("{name}{ORIGIN}"));
        write_atomic(&origin_path, format!("{origin_json}\n").as_bytes())?;
        let mut sums = self.read_sums()?;
        sums.insert(name.to_owned(), sha512.to_owned());
        write_atomic(&self.dir.join(CACHE_SUMS), render_sums(&sums).as_bytes())?;
        fs::set_permissions(staged, fs::Permissions::from_mode(IMAGE_MODE))
            .map_err(io_err("make read-only", staged))?;
        rename_into(staged, &self.image_path(name))
    }

    /// Remove the sidecars of `name` (a manifest of a built image describes no other image).
    fn discard_sidecars(&self, name: &str) -> Result<(), CacheError> {
        let sums = self.read_sums()?;
        for sidecar in self.sidecars(name, &sums)? {
            remove_if_present(&self.dir.join(sidecar))?;
        }
        Ok(())
    }

    /// Remove `name` entirely: image, entry, origin, sidecars, partial download.
    fn discard(&self, name: &str) -> Result<(), CacheError> {
        self.discard_sidecars(name)?;
        let mut sums = self.read_sums()?;
        for suffix in ["", ORIGIN, PART] {
            remove_if_present(&self.dir.join(format!("{name}{suffix}")))?;
        }
        if sums.remove(name).is_some() {
            write_atomic(&self.dir.join(CACHE_SUMS), render_sums(&sums).as_bytes())?;
        }
        Ok(())
    }

    /// The cache's own checksums. A damaged file is treated as empty, loudly: every image then
    /// fails verification and is fetched or built again, which is slow but never wrong.
    fn read_sums(&self) -> Result<BTreeMap<String, String>, CacheError> {
        let path = self.dir.join(CACHE_SUMS);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        Ok(parse_sums(&text).unwrap_or_else(|e| {
            say!("{path} is damaged ({e}): no cached image can be verified against it");
            BTreeMap::new()
        }))
    }

    fn read_origin(&self, name: &str) -> Option<Origin> {
        let text = fs::read_to_string(self.dir.join(format!("{name}{ORIGIN}"))).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// File names in the cache that belong to `name`, by [`belongs_to`].
    fn sidecars(
        &self,
        name: &str,
        sums: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, CacheError> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err("list", &self.dir))? {
            let entry = entry.map_err(io_err("list", &self.dir))?;
            let Ok(file_name) = entry.file_name().into_string() else {
                continue;
            };
            if entry.file_type().is_ok_and(|t| t.is_file()) && belongs_to(&file_name, name, sums) {
                found.push(file_name);
            }
        }
        found.sort();
        Ok(found)
    }
}

/// The prefixes that name a file after image `name`: `name.` and, when it has an extension,
/// its stem (`debian-13-boma-amd64.qcow2` → `debian-13-boma-amd64.qcow2.`,
/// `debian-13-boma-amd64.`), so both `….qcow2.packages` and `….packages` read as its own.
fn prefixes(name: &str) -> Vec<String> {
    let stem = name
        .rsplit_once('.')
        .map(|(stem, _)| stem)
        .filter(|s| !s.is_empty());
    std::iter::once(name)
        .chain(stem)
        .map(|p| format!("{p}."))
        .collect()
}

/// Whether cache file `file` is a sidecar of image `name`: named after it, not the cache's own
/// bookkeeping, not another image, and not named after another image (`x.qcow2.packages`
/// belongs to `x.qcow2` even though it also starts with the stem of `x.raw`).
fn belongs_to(file: &str, name: &str, sums: &BTreeMap<String, String>) -> bool {
    let after_prefix = |prefix: &String| {
        file.strip_prefix(prefix.as_str())
            .is_some_and(|rest| !rest.is_empty())
    };
    prefixes(name).iter().any(after_prefix)
        && file != name
        && !file.ends_with(PART)
        && !file.ends_with(ORIGIN)
        && !sums.contains_key(file)
        && !sums
            .keys()
            .filter(|other| *other != name)
            .any(|other| file.starts_with(&format!("{other}.")))
}

/// The cache file name for sidecar `file` of an image adopted as `name` from a file called
/// `built`: kept when already named after `name`; renamed when named after `built` (a build's
/// temporary name); `None` when named after neither.
fn sidecar_dest(file: &str, name: &str, built: &str) -> Option<String> {
    let dest = if belongs_to(file, name, &BTreeMap::new()) {
        file.to_owned()
    } else {
        // Pair the built file's prefixes with the image's: `b.qcow2.` → `name.`, `b.` → stem.
        prefixes(built)
            .iter()
            .zip(prefixes(name))
            .find_map(|(from, to)| {
                file.strip_prefix(from.as_str())
                    .filter(|rest| !rest.is_empty())
                    .map(|rest| format!("{to}{rest}"))
            })?
    };
    belongs_to(&dest, name, &BTreeMap::new()).then_some(dest)
}

impl Drop for CacheLock<'_> {
    fn drop(&mut self) {
        let mut held = self.cache.held();
        held.depth -= 1;
        if held.depth == 0 {
            held.owner = None;
            // Closing the last descriptor releases the flock.
            held.file = None;
        }
    }
}

/// Write `bytes` to `path` atomically: a hidden temp file, fsync, rename, fsync the directory.
fn write_atomic(path: &Utf8Path, bytes: &[u8]) -> Result<(), CacheError> {
    let dir = path.parent().unwrap_or(Utf8Path::new("."));
    // Hidden, so it can never be mistaken for an image's sidecar.
    let tmp = dir.join(format!(".{}.tmp", path.file_name().unwrap_or_default()));
    let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_err("write", &tmp))?;
    drop(file);
    rename_into(&tmp, path)
}

/// Rename and make the rename durable; a move across filesystems gets its own explanation.
fn rename_into(from: &Utf8Path, to: &Utf8Path) -> Result<(), CacheError> {
    match fs::rename(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            return Err(CacheError::Adopt {
                path: from.to_owned(),
                reason: "it is on another filesystem than the cache: build it in the cache's \
                         scratch_dir() so it can be renamed into place"
                    .to_owned(),
            });
        }
        Err(e) => return Err(io_err("rename into the cache", from)(e)),
    }
    let dir = to.parent().unwrap_or(Utf8Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

/// Best-effort removal of a failed download; the error being returned matters more.
fn discard_part(part: &Utf8Path) {
    if let Err(e) = remove_if_present(part) {
        say!("{e}");
    }
}

fn same_file(a: &Utf8Path, b: &Utf8Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_are_named_after_the_image_or_its_stem() {
        let name = "debian-13-boma-amd64.qcow2";
        assert_eq!(
            prefixes(name),
            ["debian-13-boma-amd64.qcow2.", "debian-13-boma-amd64."]
        );
        assert_eq!(prefixes("plain"), ["plain."]);
        let dest = |file| sidecar_dest(file, name, "build-1.qcow2");
        // boma-golden's manifest name, and the long form, are kept as they are.
        assert_eq!(
            dest("debian-13-boma-amd64.packages").as_deref(),
            Some("debian-13-boma-amd64.packages")
        );
        assert_eq!(
            dest("debian-13-boma-amd64.qcow2.log").as_deref(),
            Some("debian-13-boma-amd64.qcow2.log")
        );
        // Named after a build's temporary file: renamed to match the image.
        assert_eq!(
            dest("build-1.qcow2.packages").as_deref(),
            Some("debian-13-boma-amd64.qcow2.packages")
        );
        assert_eq!(
            dest("build-1.packages").as_deref(),
            Some("debian-13-boma-amd64.packages")
        );
        for refused in [
            "notes.txt",
            "debian-13-boma-amd64.",
            "debian-13-boma-amd64.qcow2",
            "build-1.qcow2.part",
            "debian-13-boma-amd64.origin",
        ] {
            assert_eq!(dest(refused), None, "{refused}");
        }
    }

    #[test]
    fn a_sidecar_named_after_another_image_is_not_claimed() {
        let digest = "0".repeat(128);
        let sums: BTreeMap<String, String> = [
            ("x.qcow2".to_owned(), digest.clone()),
            ("x.raw".to_owned(), digest),
        ]
        .into();
        assert!(belongs_to("x.qcow2.packages", "x.qcow2", &sums));
        assert!(!belongs_to("x.qcow2.packages", "x.raw", &sums));
        assert!(!belongs_to("x.raw", "x.qcow2", &sums));
        assert!(!belongs_to("x.raw.part", "x.qcow2", &sums));
        // Named after the shared stem: claimed by both, an ambiguity only such pairs can have.
        assert!(
            belongs_to("x.packages", "x.qcow2", &sums) && belongs_to("x.packages", "x.raw", &sums)
        );
    }
}
