//! The diagnostics bundle written when a run fails after boot: what an operator reads first.

use boma_exec::say;
use std::time::Duration;

use boma_exec::redact::redact;
use camino::{Utf8Path, Utf8PathBuf};

use crate::run::dir::{CONSOLE_LOG, RECORD};
use crate::{Guest, RunRecord, VmError};

/// File name → command run on the guest (as root).
pub const COLLECTED: &[(&str, &str)] = &[
    ("nft-ruleset.txt", "sudo nft list ruleset"),
    ("docker-ps.txt", "sudo docker ps -a"),
    ("ss-tlnp.txt", "sudo ss -tlnp"),
    ("journal-boot.txt", "sudo journalctl -b --no-pager"),
    ("critical-chain.txt", "sudo systemd-analyze critical-chain"),
    ("cloud-init-status.txt", "sudo cloud-init status --long"),
];

/// Collect the bundle into `out`: each command's output (or why it could not run), the serial
/// console and the run record. Never fails half-way: a guest that is unreachable still gets its
/// console copied. Returns the directory.
pub fn collect(
    guest: &dyn Guest,
    record: &RunRecord,
    out: &Utf8Path,
) -> Result<Utf8PathBuf, VmError> {
    std::fs::create_dir_all(out).map_err(|e| VmError::io(out, e))?;
    say!("collecting diagnostics into {out}");
    let mut reachable = true;
    for (file, command) in COLLECTED {
        let text = if reachable {
            match guest.run(&record.ssh, command, Duration::from_secs(60), false) {
                Ok(o) if o.status.code() == Some(crate::guest::ssh::SSH_FAILED) => {
                    reachable = false;
                    format!(
                        "$ {command}\n(ssh failed: the guest is unreachable)\n{}",
                        o.stderr
                    )
                }
                Ok(o) => format!(
                    "$ {command}\n(exit status {})\n{}{}",
                    o.status
                        .code()
                        .map_or("unknown".to_owned(), |c| c.to_string()),
                    o.stdout,
                    o.stderr
                ),
                Err(e) => format!("$ {command}\n(could not run: {e})\n"),
            }
        } else {
            format!("$ {command}\n(skipped: the guest is unreachable over ssh)\n")
        };
        write(out, file, &text)?;
    }
    // The bundle keeps them under the names they have in the run directory.
    match std::fs::read(record.console_log()) {
        Ok(bytes) => write(out, CONSOLE_LOG, &String::from_utf8_lossy(&bytes))?,
        Err(e) => write(
            out,
            CONSOLE_LOG,
            &format!("(no serial console at {}: {e})\n", record.console_log()),
        )?,
    }
    let run = serde_json::to_string_pretty(record).expect("a run record serialises");
    write(out, RECORD, &run)?;
    Ok(out.to_owned())
}

/// The last `lines` lines of a serial console as a person reads them: terminal colour codes
/// and carriage returns removed, blank lines dropped. Pure. What an operator needs when the
/// guest never answered (emergency mode, a service that cannot bind).
pub fn console_tail(console: &str, lines: usize) -> Vec<String> {
    let mut kept: Vec<String> = console
        .lines()
        .map(strip_terminal_codes)
        .map(|l| l.trim_end().to_owned())
        .filter(|l| !l.trim().is_empty())
        .collect();
    let start = kept.len().saturating_sub(lines);
    kept.drain(..start);
    kept
}

/// How the kernel's panic line starts.
const PANIC: &str = "Kernel panic - not syncing:";
/// What the kernel's banner, the first line of every boot, holds.
const BANNER: &str = "] Linux version ";

/// Why a guest failed a boot, as its serial console shows it. Seen while a wait is still
/// going, it ends the wait at once: a panicked kernel or a system in emergency mode does not
/// come back by itself (the golden image boots without `panic=`, so a panic halts), and one
/// that does (a guest with `kernel.panic=N` restarts N seconds after a panic) failed all the
/// same.
#[derive(Debug, Clone, PartialEq)]
pub enum BootVerdict {
    /// The kernel panicked: when (seconds into the boot, from the panic line's stamp), the
    /// panic's words, and the first Oops, BUG or general protection fault with where it hit.
    KernelPanic {
        at: Option<f64>,
        words: String,
        first_sign: Option<String>,
        place: Option<String>,
        /// Whether the kernel had started its init (`Run /init as init process`) before the
        /// first sign: from then on the boot may have written to the disk. A boot whose start
        /// the console does not show (its banner) counts as past init.
        after_init: bool,
        /// How many boots the console shows after this one (the guest restarted itself after
        /// the panic, `kernel.panic=N`): the panic is the verdict all the same.
        later_boots: usize,
    },
    /// systemd sits in emergency mode (a mount or unit the boot needs failed); sshd is not up.
    EmergencyMode,
}

impl BootVerdict {
    /// Whether this is QEMU's multi-threaded TCG crashing the guest rather than the guest's own
    /// doing: a kernel-mode breakpoint trap (`Oops: int3`) that the kernel's text patching does
    /// not claim. The kernel writes int3 only while it patches its own code (static keys, jump
    /// labels at boot) and handles every one it writes; one it does not handle most likely
    /// means a vCPU ran stale code that another had already patched back. Seen on this
    /// project's guests under `-accel tcg,thread=multi` in the first seconds of a boot, in
    /// `enqueue_timer` and `sched_clock_cpu` (both behind static keys), after changes that never
    /// touched the kernel, each time before the kernel started init. Only such a trap counts:
    /// before init nothing of the guest has run and nothing was written to its disk, so a reset
    /// boots the same disk.
    pub fn is_emulator_fault(&self) -> bool {
        matches!(
            self,
            BootVerdict::KernelPanic { first_sign: Some(sign), after_init: false, .. }
                if sign.starts_with("Oops: int3")
        )
    }
}

impl std::fmt::Display for BootVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootVerdict::KernelPanic {
                at,
                words,
                first_sign,
                place,
                later_boots,
                ..
            } => {
                match at {
                    Some(at) => write!(f, "its kernel panicked {at:.1} s into boot: {words}")?,
                    None => write!(f, "its kernel panicked: {words}")?,
                }
                if let Some(sign) = first_sign {
                    write!(f, " (first sign: {sign}")?;
                    if let Some(place) = place {
                        write!(f, ", in {place}")?;
                    }
                    write!(f, ")")?;
                }
                if *later_boots > 0 {
                    write!(
                        f,
                        "; the console shows {later_boots} boot(s) after it (the guest restarted itself): a panic in any boot since the reboot was asked is the verdict, even when a later boot answers"
                    )?;
                }
                Ok(())
            }
            BootVerdict::EmergencyMode => write!(
                f,
                "it is in emergency mode (a mount or unit it needs failed: see journal-boot.txt or the console above it)"
            ),
        }
    }
}

/// What the serial console says about the boots it shows, when one of them failed: the first
/// boot whose kernel panicked or that sat in emergency mode. `None` while every boot shows
/// neither (still booting, or up). Pure.
///
/// Every boot counts, not only the last: the caller passes the console since the reboot was
/// asked (or since a first boot began), and a guest that restarts itself after a panic
/// (`kernel.panic=N`, common hardening) shows the panic in one boot and a healthy boot after
/// it. The text before the first banner is the end of a boot already going (the one a reboot
/// stops): judged too, as past its init.
pub fn boot_verdict(console: &str) -> Option<BootVerdict> {
    let lines: Vec<String> = console.lines().map(strip_terminal_codes).collect();
    let mut starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains(BANNER))
        .map(|(i, _)| i)
        .collect();
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    let boots: Vec<&[String]> = starts
        .iter()
        .zip(starts.iter().skip(1).chain(std::iter::once(&lines.len())))
        .map(|(&start, &end)| &lines[start..end])
        .collect();
    boots
        .iter()
        .enumerate()
        .find_map(|(i, boot)| one_boot_verdict(boot, boots.len() - 1 - i))
}

/// The verdict of one boot's lines (from its banner, when the console shows it), with how
/// many boots follow it.
fn one_boot_verdict(boot: &[String], later_boots: usize) -> Option<BootVerdict> {
    let seen_start = boot.first().is_some_and(|l| l.contains(BANNER));
    if let Some(panic_at) = boot.iter().position(|l| l.contains(PANIC)) {
        let panic = &boot[panic_at];
        let words = panic
            .split_once(PANIC)
            .map_or("", |(_, w)| w.trim())
            .to_owned();
        let first_sign = boot.iter().position(|l| {
            let text = after_timestamp(l);
            text.starts_with("Oops:")
                || text.starts_with("BUG:")
                || text.starts_with("general protection fault")
        });
        let place = first_sign.and_then(|at| {
            boot[at..].iter().find_map(|l| {
                after_timestamp(l).strip_prefix("RIP: ").map(|r| {
                    r.split_once(':')
                        .map_or(r, |(_, place)| place)
                        .trim()
                        .to_owned()
                })
            })
        });
        let trouble_at = first_sign.unwrap_or(panic_at);
        let after_init = !seen_start
            || boot[..trouble_at]
                .iter()
                .any(|l| after_timestamp(l).starts_with("Run ") && l.contains(" as init process"));
        return Some(BootVerdict::KernelPanic {
            at: kernel_seconds(panic),
            words,
            first_sign: first_sign.map(|at| after_timestamp(&boot[at]).trim().to_owned()),
            place,
            after_init,
            later_boots,
        });
    }
    boot.iter()
        .any(|l| l.contains("You are in emergency mode"))
        .then_some(BootVerdict::EmergencyMode)
}

/// The text of a kernel log line after its `[    1.234567]` stamp (the line itself without one).
fn after_timestamp(line: &str) -> &str {
    match line.trim_start().strip_prefix('[') {
        Some(rest) => rest
            .split_once(']')
            .map_or(line, |(_, text)| text.trim_start()),
        None => line,
    }
}

/// The seconds since boot in a kernel log line's `[    1.234567]` stamp.
fn kernel_seconds(line: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix('[')?;
    rest.split_once(']')?.0.trim().parse().ok()
}

/// `text` without ANSI escape sequences (`ESC [ … letter`) and carriage returns.
fn strip_terminal_codes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    // Parameters and intermediates, up to the final letter.
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

fn write(dir: &Utf8Path, file: &str, text: &str) -> Result<(), VmError> {
    let path = dir.join(file);
    std::fs::write(&path, redact(text)).map_err(|e| VmError::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_tail_is_plain_text() {
        let console = "[   49.9] systemd[1]: Started emergency.service\r\n\
                       [\u{1b}[0;32m  OK  \u{1b}[0m] Reached target \u{1b}[0;1;39memergency.target\u{1b}[0m - Emergency Mode.\r\n\
                       \r\n\
                       You are in emergency mode.\n";
        assert_eq!(
            console_tail(console, 2),
            [
                "[  OK  ] Reached target emergency.target - Emergency Mode.",
                "You are in emergency mode."
            ]
        );
        assert_eq!(console_tail(console, 10).len(), 3);
        assert!(console_tail("", 5).is_empty());
    }
}
