//! Which backend a new run uses: the operator's choice, resolved against whether libvirt can be
//! used here (`boma_host::judge::libvirt`). Pure, so that `cargo test` covers every case the
//! real machine can meet.

use std::fmt;
use std::str::FromStr;

use boma_host::judge::Libvirt;
use boma_vm::BackendKind;

/// What the operator asked for (`--backend`, `BOMA_IT_BACKEND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// libvirt when `virsh` reaches a daemon in this network namespace, else QEMU.
    Auto,
    Qemu,
    Libvirt,
}

impl BackendChoice {
    pub const NAMES: [&'static str; 3] = ["auto", "qemu", "libvirt"];
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<BackendChoice, String> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "qemu" => Ok(BackendChoice::Qemu),
            "libvirt" => Ok(BackendChoice::Libvirt),
            other => Err(format!(
                "unknown backend `{other}`; valid backends: {}",
                BackendChoice::NAMES.join(", ")
            )),
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Qemu => "qemu",
            BackendChoice::Libvirt => "libvirt",
        })
    }
}

/// The backend resolved, and why (said once to the operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub kind: BackendKind,
    pub why: String,
}

/// Resolve the operator's choice against what libvirt is here. `Err` is a refusal (exit 2)
/// with its fix.
pub fn resolve(choice: BackendChoice, libvirt: &Libvirt) -> Result<Resolved, String> {
    match (choice, libvirt) {
        (BackendChoice::Qemu, _) => Ok(Resolved {
            kind: BackendKind::Qemu,
            why: "asked for".into(),
        }),
        (BackendChoice::Libvirt, Libvirt::Usable) => Ok(Resolved {
            kind: BackendKind::Libvirt,
            why: "asked for".into(),
        }),
        (BackendChoice::Libvirt, Libvirt::NotInstalled { tool }) => Err(format!(
            "the libvirt backend needs `{tool}`: {}; or use --backend qemu",
            boma_exec::package_hint(tool).unwrap_or("install it")
        )),
        (BackendChoice::Libvirt, why @ (Libvirt::OtherNamespace { .. } | Libvirt::NoDaemon)) => {
            Err(format!(
                "the libvirt backend is not usable here: {why}; or use --backend qemu"
            ))
        }
        (BackendChoice::Auto, Libvirt::Usable) => Ok(Resolved {
            kind: BackendKind::Libvirt,
            why: "auto: virsh reaches a libvirt daemon in this network namespace".into(),
        }),
        (
            BackendChoice::Auto,
            Libvirt::NotInstalled { .. } | Libvirt::OtherNamespace { .. } | Libvirt::NoDaemon,
        ) => Ok(Resolved {
            kind: BackendKind::Qemu,
            why: "auto: no usable libvirt daemon, so QEMU directly".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_choice_against_every_probe() {
        let usable = Libvirt::Usable;
        let absent = Libvirt::NotInstalled { tool: "virsh" };
        let elsewhere = Libvirt::OtherNamespace { pid: 9 };
        let kind = |c, p| resolve(c, p).map(|r| r.kind);
        assert_eq!(kind(BackendChoice::Qemu, &usable), Ok(BackendKind::Qemu));
        assert_eq!(kind(BackendChoice::Qemu, &absent), Ok(BackendKind::Qemu));
        assert_eq!(kind(BackendChoice::Auto, &usable), Ok(BackendKind::Libvirt));
        assert_eq!(kind(BackendChoice::Auto, &absent), Ok(BackendKind::Qemu));
        assert_eq!(kind(BackendChoice::Auto, &elsewhere), Ok(BackendKind::Qemu));
        assert_eq!(
            kind(BackendChoice::Auto, &Libvirt::NoDaemon),
            Ok(BackendKind::Qemu)
        );
        assert_eq!(
            kind(BackendChoice::Libvirt, &usable),
            Ok(BackendKind::Libvirt)
        );
        let err = resolve(BackendChoice::Libvirt, &absent).unwrap_err();
        assert!(
            err.contains("virsh") && err.contains("libvirt-clients"),
            "{err}"
        );
        let err = resolve(BackendChoice::Libvirt, &elsewhere).unwrap_err();
        assert!(
            err.contains("another network namespace") && err.contains("--backend qemu"),
            "{err}"
        );
    }

    #[test]
    fn names_round_trip() {
        for name in BackendChoice::NAMES {
            assert_eq!(name.parse::<BackendChoice>().unwrap().to_string(), name);
        }
        assert!(
            "kvm"
                .parse::<BackendChoice>()
                .unwrap_err()
                .contains("auto, qemu, libvirt")
        );
    }
}
