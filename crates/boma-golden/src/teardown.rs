//! The build's scratch directory, and the guard that takes it apart on every path out.
//!
//! Whatever the build attaches or mounts lives under one directory, so teardown does not
//! need to remember what succeeded: it asks the kernel. Every mount point under the scratch
//! directory (ours, or mmdebstrap's if it was killed mid-run) is unmounted deepest first,
//! every loop device backed by the scratch disk is detached, and only when nothing is mounted
//! there any more is the directory deleted (deleting through a live mount of `/dev` or
//! `/proc` would be a disaster). The same code runs on success, on error, from `Drop` on a
//! panic or an interrupt, and at the start of a build over a killed build's leftovers.

use boma_exec::say;
use std::fmt::Write as _;

use boma_exec::CmdExt as _;
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{Shell, cmd};

use crate::BuildError;

/// The scratch directory of one build; taken apart when dropped unless [`Scratch::close`]d.
pub(crate) struct Scratch {
    sh: Shell,
    dir: Utf8PathBuf,
    /// Outputs written outside the scratch directory that a failed build must not leave.
    partial: Vec<Utf8PathBuf>,
    closed: bool,
}

impl Scratch {
    /// Create the scratch directory `dir`, first taking apart what a killed build left there.
    pub(crate) fn create(dir: Utf8PathBuf) -> Result<Scratch, BuildError> {
        let sh =
            Shell::new().map_err(|e| BuildError::Image(format!("could not start a shell: {e}")))?;
        if dir.exists() {
            say!("    removing the leftovers of an earlier build in {dir}");
            let dir = dir
                .canonicalize_utf8()
                .map_err(BuildError::io("resolve", &dir))?;
            take_apart(&sh, &dir)?;
        }
        std::fs::create_dir_all(&dir).map_err(BuildError::io("create", &dir))?;
        // Mount points in /proc/self/mountinfo are canonical: compare against the same form.
        let dir = dir
            .canonicalize_utf8()
            .map_err(BuildError::io("resolve", &dir))?;
        Ok(Scratch {
            sh,
            dir,
            partial: Vec::new(),
            closed: false,
        })
    }

    pub(crate) fn dir(&self) -> &Utf8Path {
        &self.dir
    }

    /// The raw disk image; loop devices backed by it are detached on teardown.
    pub(crate) fn raw_disk(&self) -> Utf8PathBuf {
        raw_disk(&self.dir)
    }

    /// Remove `path` too if the build fails (a half-written output next to the scratch).
    pub(crate) fn track_partial(&mut self, path: Utf8PathBuf) {
        self.partial.push(path);
    }

    /// Unmount everything under the scratch directory and detach its loop devices, keeping
    /// the files: the raw disk is converted after this.
    pub(crate) fn release_devices(&self) -> Result<(), BuildError> {
        release(&self.sh, &self.dir)
    }

    /// Success: take the scratch directory apart and keep the outputs.
    pub(crate) fn close(mut self) -> Result<(), BuildError> {
        self.closed = true;
        take_apart(&self.sh, &self.dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        say!("==> cleanup");
        if let Err(e) = take_apart(&self.sh, &self.dir) {
            say!("warning: {e}");
        }
        for path in &self.partial {
            if path.exists()
                && let Err(e) = std::fs::remove_file(path)
            {
                say!("warning: could not remove the unfinished {path}: {e}");
            }
        }
        say!("    cleanup finished");
    }
}

pub(crate) fn raw_disk(dir: &Utf8Path) -> Utf8PathBuf {
    dir.join("disk.raw")
}

/// Release every device under `dir`, then delete it, unless something is still mounted there.
fn take_apart(sh: &Shell, dir: &Utf8Path) -> Result<(), BuildError> {
    release(sh, dir)?;
    let still = mounts_under(&read_mountinfo(), dir);
    if !still.is_empty() {
        return Err(BuildError::Teardown {
            dir: dir.to_owned(),
            problems: format!("still mounted, so not deleted: {}", still.join(", ")),
        });
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| BuildError::Teardown {
            dir: dir.to_owned(),
            problems: format!("could not delete it: {e}"),
        })?;
    }
    Ok(())
}

/// Unmount everything under `dir` (deepest first, lazily if busy) and detach the loop
/// devices backed by its raw disk. Tries every step and reports all that failed.
fn release(sh: &Shell, dir: &Utf8Path) -> Result<(), BuildError> {
    let mut problems = String::new();
    for target in mounts_under(&read_mountinfo(), dir) {
        if let Err(first) = teardown_cmd(cmd!(sh, "umount {target}")) {
            // Busy (a process still in the chroot): detach it now so the loop device can go,
            // the kernel finishes the unmount when the last user leaves.
            if let Err(second) = teardown_cmd(cmd!(sh, "umount --lazy {target}")) {
                let _ = write!(problems, "{first}; {second}; ");
            }
        }
    }
    let raw = raw_disk(dir);
    if raw.exists() {
        match teardown_cmd(cmd!(sh, "losetup --associated {raw}")) {
            Ok(listing) => {
                for device in loop_devices(&listing) {
                    if let Err(e) = teardown_cmd(cmd!(sh, "losetup --detach {device}")) {
                        let _ = write!(problems, "{e}; ");
                    }
                }
            }
            Err(e) => {
                let _ = write!(problems, "{e}; ");
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(BuildError::Teardown {
            dir: dir.to_owned(),
            problems: problems.trim_end_matches("; ").to_owned(),
        })
    }
}

/// Run one teardown command through boma-exec, uninterruptible: after Ctrl-C is exactly when
/// unmount and `losetup -d` must still run. Bounded, since a hung unmount must not hang the
/// harness forever.
fn teardown_cmd(cmd: xshell::Cmd<'_>) -> Result<String, String> {
    cmd.exec()
        .uninterruptible()
        .timeout(std::time::Duration::from_secs(60))
        .run()
        .map(|out| out.stdout)
        .map_err(|e| e.to_string())
}

fn read_mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

/// The mount points at or below `dir` in `/proc/self/mountinfo` text, in the order to
/// unmount them: deepest first, and later mounts of one path before earlier ones.
pub(crate) fn mounts_under(mountinfo: &str, dir: &Utf8Path) -> Vec<String> {
    let dir = dir.as_str().trim_end_matches('/');
    let mut found: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|target| {
            target == dir
                || target
                    .strip_prefix(dir)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .collect();
    found.reverse();
    // Stable: among equally deep mount points the later mount stays first.
    found.sort_by_key(|target| std::cmp::Reverse(target.matches('/').count()));
    found
}

/// mountinfo writes space, tab, newline and backslash in a path as octal escapes (`\040`).
fn unescape_mount_path(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The devices in `losetup --associated` output (`/dev/loop0: [2049]:1234 (/path)`).
pub(crate) fn loop_devices(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| line.split_once(':').map(|(device, _)| device.trim()))
        .filter(|device| device.starts_with("/dev/loop"))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:5 / /dev rw,relatime shared:2 - devtmpfs udev rw
90 22 259:0 / /var/tmp/w/golden-build.scratch/mnt rw,relatime - ext4 /dev/loop0p1 rw
91 90 0:60 / /var/tmp/w/golden-build.scratch/mnt/dev rw - tmpfs tmpfs rw,mode=755
92 90 0:61 / /var/tmp/w/golden-build.scratch/mnt/proc rw - proc proc rw
93 90 0:62 / /var/tmp/w/golden-build.scratch/mnt/sys rw - sysfs sysfs rw
94 22 0:63 / /var/tmp/w/golden-build.scratch-other rw - tmpfs tmpfs rw
95 22 0:64 / /var/tmp/w/golden-build.scratch/with\\040space rw - tmpfs tmpfs rw
96 93 0:65 / /var/tmp/w/golden-build.scratch/mnt/sys rw - sysfs sysfs rw
";

    #[test]
    fn mounts_under_scratch_deepest_and_latest_first() {
        let dir = Utf8Path::new("/var/tmp/w/golden-build.scratch");
        assert_eq!(
            mounts_under(MOUNTINFO, dir),
            [
                "/var/tmp/w/golden-build.scratch/mnt/sys",
                "/var/tmp/w/golden-build.scratch/mnt/sys",
                "/var/tmp/w/golden-build.scratch/mnt/proc",
                "/var/tmp/w/golden-build.scratch/mnt/dev",
                "/var/tmp/w/golden-build.scratch/with space",
                "/var/tmp/w/golden-build.scratch/mnt",
            ]
        );
    }

    #[test]
    fn a_sibling_with_a_common_prefix_is_not_ours() {
        let dir = Utf8Path::new("/var/tmp/w/golden-build.scratch/");
        assert!(
            !mounts_under(MOUNTINFO, dir)
                .iter()
                .any(|m| m.ends_with("-other"))
        );
    }

    #[test]
    fn nothing_mounted_means_nothing_to_do() {
        assert!(mounts_under(MOUNTINFO, Utf8Path::new("/var/tmp/elsewhere")).is_empty());
        assert!(mounts_under("", Utf8Path::new("/var/tmp/w")).is_empty());
    }

    #[test]
    fn unescapes_octal_and_keeps_stray_backslashes() {
        assert_eq!(unescape_mount_path("/a\\040b\\011c"), "/a b\tc");
        assert_eq!(unescape_mount_path("/a\\b"), "/a\\b");
        assert_eq!(unescape_mount_path("/a\\13"), "/a\\13");
    }

    #[test]
    fn dropping_an_unclosed_scratch_removes_it_and_the_partial_outputs() {
        let base = tempfile::tempdir().unwrap();
        let base = Utf8Path::from_path(base.path()).unwrap();
        let dir = base.join("scratch");
        let partial = base.join("image.qcow2.part");
        let kept = base.join("image.packages");
        {
            let mut scratch = Scratch::create(dir.clone()).unwrap();
            std::fs::create_dir_all(scratch.dir().join("rootfs/etc")).unwrap();
            std::fs::write(scratch.dir().join("rootfs/etc/hostname"), "x").unwrap();
            std::fs::write(&partial, "half").unwrap();
            std::fs::write(&kept, "done").unwrap();
            scratch.track_partial(partial.clone());
        }
        assert!(!dir.exists(), "scratch left behind");
        assert!(!partial.exists(), "partial output left behind");
        assert!(kept.exists(), "an untracked file was removed");
    }

    #[test]
    fn create_clears_a_leftover_scratch_and_close_removes_it() {
        let base = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(base.path()).unwrap().join("scratch");
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        std::fs::write(dir.join("rootfs/stale"), "old").unwrap();
        let scratch = Scratch::create(dir.clone()).unwrap();
        assert!(!dir.join("rootfs/stale").exists(), "leftover kept");
        scratch.close().unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn loop_devices_from_losetup_listing() {
        let listing = "/dev/loop0: [65025]:1312 (/var/tmp/w/disk.raw)\n\
                       /dev/loop3: [65025]:1312 (/var/tmp/w/disk.raw)\n\
                       garbage line\n";
        assert_eq!(loop_devices(listing), ["/dev/loop0", "/dev/loop3"]);
        assert!(loop_devices("").is_empty());
    }
}
