//! KVM or TCG: the accelerator, and the verdict a probe guest leaves in the image cache.
//!
//! Whether KVM works here is decided by running guest code (boma-vm's probe: on the machines CI
//! runs on, `/dev/kvm` opens and a guest kernel still hangs). The probe boots a guest, so it
//! stays with the VMs; what everyone reads of it lives here: the verdict file, what a verdict
//! is valid for (this host boot, this QEMU, this image), and whether a cached one holds. The
//! doctor reads it without probing; `it` probes only when no verdict holds
//! ([`crate::judge::kvm_plan`]). Pure.

use std::time::Duration;

/// The verdict file, in the image cache directory.
pub const PROBE_FILE: &str = "kvm-probe.json";

/// How the guest CPU is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// The `-accel` argument for QEMU.
    pub fn qemu_accel(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            // Multi-threaded TCG: `-smp 2` then boots ~35 % faster than one vCPU.
            Accel::Tcg => "tcg,thread=multi",
        }
    }

    /// The `-cpu` model for QEMU.
    pub fn qemu_cpu(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        }
    }

    /// libvirt's `--virt-type`.
    pub fn virt_type(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "qemu",
        }
    }

    /// A wait written for TCG (the slow case, where every figure was measured), fitted to this
    /// accelerator: KVM guests boot several times faster, so a hung KVM guest is reported
    /// sooner, but never with less than a minute of patience.
    pub fn scale(self, tcg: Duration) -> Duration {
        match self {
            Accel::Tcg => tcg,
            Accel::Kvm => (tcg / 3).max(Duration::from_secs(60)).min(tcg),
        }
    }

    /// One line for the operator.
    pub fn describe(self) -> &'static str {
        match self {
            Accel::Kvm => "KVM (hardware virtualisation, a probe guest ran)",
            Accel::Tcg => {
                "TCG (software emulation: no working KVM here; expect boots of ~45 s and reboots of ~60-90 s, 5-10x slower than KVM)"
            }
        }
    }
}

/// What a verdict is valid for: a probe on another host boot, with another QEMU, or of another
/// golden image proves nothing about this one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProbeKey {
    pub host_boot_id: String,
    /// The first line of `qemu-system-x86_64 --version`.
    pub qemu_version: String,
    pub image: String,
}

/// The verdict file: what a probe decided, for which key, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    pub key: ProbeKey,
    pub accel: Accel,
    /// Why the probe decided so (which stage failed), when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Verdict {
    /// The verdict file's text.
    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).expect("a verdict serialises")
    }
}

/// What the verdict file holds, seen from the key it would have to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeCache {
    /// No verdict file: `it` probes once and writes it.
    Absent,
    /// The file exists but is not a verdict.
    Unreadable,
    Cached(CachedProbe),
}

impl ProbeCache {
    /// What the verdict file `text` says for `key`.
    pub fn read(text: &str, key: &ProbeKey) -> ProbeCache {
        let Ok(verdict) = serde_json::from_str::<Verdict>(text) else {
            return ProbeCache::Unreadable;
        };
        // An empty part of the key (a boot id or QEMU version that could not be read) matches
        // nothing: a verdict is never reused on a guess.
        let same = |cached: &str, now: &str| !now.is_empty() && cached == now;
        ProbeCache::Cached(CachedProbe {
            accel: verdict.accel,
            reason: verdict.reason,
            same_boot: same(&verdict.key.host_boot_id, &key.host_boot_id),
            same_qemu: same(&verdict.key.qemu_version, &key.qemu_version),
            same_image: same(&verdict.key.image, &key.image),
        })
    }

    /// The accelerator a verdict that still holds says.
    pub fn current(&self) -> Option<Accel> {
        match self {
            ProbeCache::Cached(probe) if probe.current() => Some(probe.accel),
            _ => None,
        }
    }
}

/// A verdict and whether it still holds: `it` re-probes when the host rebooted, QEMU
/// changed, or the golden image is another one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedProbe {
    pub accel: Accel,
    /// Why the probe decided so, when the verdict file says.
    pub reason: Option<String>,
    pub same_boot: bool,
    pub same_qemu: bool,
    pub same_image: bool,
}

impl CachedProbe {
    /// Whether `it` would use this verdict without probing again.
    pub fn current(&self) -> bool {
        self.same_boot && self.same_qemu && self.same_image
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verdict file exactly as a TCG verdict was written before it carried a reason.
    const VERDICT: &str = r#"{
  "key": {
    "host_boot_id": "0b1c",
    "qemu_version": "QEMU emulator version 7.2.19",
    "image": "/var/lib/boma-integration/debian-13-boma-amd64.qcow2"
  },
  "accel": "tcg"
}"#;

    fn key() -> ProbeKey {
        ProbeKey {
            host_boot_id: "0b1c".into(),
            qemu_version: "QEMU emulator version 7.2.19".into(),
            image: "/var/lib/boma-integration/debian-13-boma-amd64.qcow2".into(),
        }
    }

    #[test]
    fn a_verdict_holds_only_for_its_boot_qemu_and_image() {
        let cache = ProbeCache::read(VERDICT, &key());
        assert_eq!(cache.current(), Some(Accel::Tcg));
        let rebooted = ProbeKey {
            host_boot_id: "ffff".into(),
            ..key()
        };
        let ProbeCache::Cached(probe) = ProbeCache::read(VERDICT, &rebooted) else {
            panic!("not read");
        };
        assert!(!probe.same_boot && !probe.current());
        let other = ProbeKey {
            qemu_version: "QEMU emulator version 10.0.0".into(),
            image: "/x.qcow2".into(),
            ..key()
        };
        let ProbeCache::Cached(probe) = ProbeCache::read(VERDICT, &other) else {
            panic!("not read");
        };
        assert!(probe.same_boot && !probe.same_qemu && !probe.same_image);
        assert_eq!(ProbeCache::read("{}", &key()), ProbeCache::Unreadable);
        assert_eq!(ProbeCache::read("not json", &key()), ProbeCache::Unreadable);
    }

    #[test]
    fn an_unread_part_of_the_key_matches_nothing() {
        let text = VERDICT.replace("QEMU emulator version 7.2.19", "");
        let unread = ProbeKey {
            qemu_version: String::new(),
            ..key()
        };
        assert_eq!(ProbeCache::read(&text, &unread).current(), None);
    }

    #[test]
    fn a_written_verdict_reads_back_with_its_reason() {
        let verdict = Verdict {
            key: key(),
            accel: Accel::Tcg,
            reason: Some("kernel hung after GRUB".into()),
        };
        let ProbeCache::Cached(probe) = ProbeCache::read(&verdict.to_text(), &key()) else {
            panic!("not read");
        };
        assert_eq!(probe.reason.as_deref(), Some("kernel hung after GRUB"));
        assert!(probe.current());
        let plain = Verdict {
            reason: None,
            ..verdict
        };
        assert!(!plain.to_text().contains("reason"));
    }

    #[test]
    fn waits_shrink_under_kvm_but_keep_a_floor() {
        let tcg = Duration::from_secs(300);
        assert_eq!(Accel::Tcg.scale(tcg), tcg);
        assert_eq!(Accel::Kvm.scale(tcg), Duration::from_secs(100));
        assert_eq!(
            Accel::Kvm.scale(Duration::from_secs(90)),
            Duration::from_secs(60)
        );
        assert_eq!(
            Accel::Kvm.scale(Duration::from_secs(30)),
            Duration::from_secs(30)
        );
    }
}
