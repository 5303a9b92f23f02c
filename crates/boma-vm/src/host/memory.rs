//! The memory and disk guards: refuse to boot a VM the control node cannot afford.

use camino::Utf8Path;

use crate::VmError;

/// Head-room left for the host (and QEMU's own overhead) beyond the guest's memory.
pub const MARGIN_MIB: u64 = 1024;
/// What a run writes to its overlay (Docker, images, logs) with room to spare.
pub const RUN_DISK_MIB: u64 = 4096;

/// `MemAvailable` from the text of `/proc/meminfo`, in MiB.
pub fn available_mib(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemAvailable:")?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib / 1024)
    })
}

/// The decision, from plain numbers.
pub fn check_memory(vm: &str, need_mib: u64, available_mib: u64) -> Result<(), VmError> {
    if available_mib >= need_mib + MARGIN_MIB {
        return Ok(());
    }
    Err(VmError::Preflight(format!(
        "not enough memory for {vm}: it needs {need_mib} MiB plus a {MARGIN_MIB} MiB margin, and {available_mib} MiB is available (MemAvailable); stop other VMs (`cargo xtask prune`) or lower mem_mib in the profile"
    )))
}

/// Read `/proc/meminfo` and apply [`check_memory`].
pub fn guard_memory(vm: &str, need_mib: u64) -> Result<(), VmError> {
    let path = Utf8Path::new("/proc/meminfo");
    let text = std::fs::read_to_string(path).map_err(|e| VmError::io(path, e))?;
    let available = available_mib(&text)
        .ok_or_else(|| VmError::Preflight("cannot read MemAvailable from /proc/meminfo".into()))?;
    check_memory(vm, need_mib, available)
}

/// Refuse when the filesystem holding `dir` has less than [`RUN_DISK_MIB`] free.
pub fn guard_disk(dir: &Utf8Path) -> Result<(), VmError> {
    check_disk(dir, free_disk_mib(dir)?)
}

/// Free space (for unprivileged users) on the filesystem holding `dir`, in MiB.
pub fn free_disk_mib(dir: &Utf8Path) -> Result<u64, VmError> {
    let stat = nix::sys::statvfs::statvfs(dir.as_std_path())
        .map_err(|e| VmError::io(dir, std::io::Error::from(e)))?;
    Ok(stat.blocks_available() as u64 * stat.fragment_size() as u64 / (1024 * 1024))
}

pub fn check_disk(dir: &Utf8Path, free_mib: u64) -> Result<(), VmError> {
    if free_mib >= RUN_DISK_MIB {
        return Ok(());
    }
    Err(VmError::Preflight(format!(
        "not enough disk for a run in {dir}: {free_mib} MiB free, a run needs {RUN_DISK_MIB} MiB (overlay growth); free some space"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_memavailable() {
        let text =
            "MemTotal:       24684032 kB\nMemFree:        1 kB\nMemAvailable:    8388608 kB\n";
        assert_eq!(available_mib(text), Some(8192));
        assert_eq!(available_mib("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn refuses_below_need_plus_margin_and_says_how_much_is_free() {
        assert!(check_memory("vm", 3072, 4096).is_ok());
        let err = check_memory("boma-it-askari-x", 3072, 4095)
            .unwrap_err()
            .to_string();
        assert!(err.contains("4095 MiB is available"), "{err}");
        assert!(err.contains("3072 MiB"), "{err}");
    }

    #[test]
    fn refuses_a_full_disk() {
        assert!(check_disk(Utf8Path::new("/x"), 5000).is_ok());
        let err = check_disk(Utf8Path::new("/x"), 100)
            .unwrap_err()
            .to_string();
        assert!(err.contains("100 MiB free"), "{err}");
    }
}
