//! The name of a test VM, as a type only a check can construct.
//!
//! Every VM, process and file the harness creates is named `boma-it-…`: the name is the
//! inventory host Ansible runs against (`--limit <vm>`), the QEMU `-name`/libvirt domain that
//! `prune` finds after a crash, and the run directory. A [`VmName`] is minted once, before
//! anything is fetched, built or probed, and carried everywhere after that; deserialising one
//! (a run record, a reservation) runs the same check.
//!
//! Two checks, three constructors (and deserialising, which is [`VmName::parse`]):
//! - [`VmName::checked`]: the shape (prefix, a plain DNS label) and that it is none of the real
//!   inventory's hosts; [`VmName::mint`] builds `boma-it-<host>-<run id>` and checks it so.
//!   This is how a run mints its name.
//! - [`VmName::parse`]: the shape only, for names found on the machine (`/proc`, `virsh list`,
//!   a record). The shape is enough there because reading the real inventory refuses a host
//!   named with the prefix ([`has_test_prefix`]), so a `boma-it-` name can never be a real
//!   host.
//!
//! [`PREFIX`] is the prefix's one definition: everything that names, finds or refuses a test
//! VM by its prefix reads it from here.

use std::collections::BTreeSet;
use std::fmt;

/// Every test VM's name starts with this.
pub const PREFIX: &str = "boma-it-";
/// A DNS label: the VM name is also its host name.
pub const MAX_LEN: usize = 63;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameRefusal {
    #[error("refusing vm name `{name}`: it is a host of the real inventory")]
    RealHost { name: String },
    #[error("refusing vm name `{name}`: a test vm's name must start with `{PREFIX}`")]
    NotTestVm { name: String },
    #[error(
        "refusing vm name `{name}`: use only a-z, 0-9 and `-`, at most {MAX_LEN} characters, not ending in `-`"
    )]
    NotHostName { name: String },
    #[error(
        "cannot name a test vm for host `{host}`: a profile name must be lowercase letters, digits and `-` (rename profiles/{host}.json)"
    )]
    BadHost { host: String },
}

/// The name of a test VM: `boma-it-<host>-<run id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VmName(String);

impl VmName {
    /// Mint the name of a new run of `host`: `boma-it-<host>-<run_id>`, checked like
    /// [`VmName::checked`]. A host that cannot be part of a DNS label is refused by name.
    pub fn mint(
        host: &str,
        run_id: &str,
        real_hosts: &BTreeSet<String>,
    ) -> Result<VmName, NameRefusal> {
        if host.is_empty() || !host.bytes().all(is_label_byte) {
            return Err(NameRefusal::BadHost {
                host: host.to_owned(),
            });
        }
        VmName::checked(&format!("{PREFIX}{host}-{run_id}"), real_hosts)
    }

    /// Accept `name` only if it starts with [`PREFIX`], is a plain host name, and is none of
    /// `real_hosts` (compared without case, as DNS does).
    pub fn checked(name: &str, real_hosts: &BTreeSet<String>) -> Result<VmName, NameRefusal> {
        // Checked first: of all reasons, this is the one an operator must hear.
        if real_hosts.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            return Err(NameRefusal::RealHost {
                name: name.to_owned(),
            });
        }
        VmName::parse(name)
    }

    /// Accept `name` if it has a test VM's shape (see the module doc for why that is enough
    /// for names found on the machine).
    pub fn parse(name: &str) -> Result<VmName, NameRefusal> {
        if !name.starts_with(PREFIX) {
            return Err(NameRefusal::NotTestVm {
                name: name.to_owned(),
            });
        }
        let label = name.len() <= MAX_LEN
            && name.len() > PREFIX.len()
            && !name.ends_with('-')
            && name.bytes().all(is_label_byte);
        if !label {
            return Err(NameRefusal::NotHostName {
                name: name.to_owned(),
            });
        }
        Ok(VmName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

/// Whether `name` (any case) carries the test VM prefix: a real inventory must not hold such a
/// host, or the shape of a name would no longer prove it is not a real host.
pub fn has_test_prefix(name: &str) -> bool {
    // `get`, not indexing: a host name read from an inventory may hold any character.
    name.get(..PREFIX.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(PREFIX))
}

impl fmt::Display for VmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for VmName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for VmName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for VmName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<VmName, D::Error> {
        let text = String::deserialize(d)?;
        VmName::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real() -> BTreeSet<String> {
        BTreeSet::from(["askari".to_owned(), "Boma-It-Evil".to_owned()])
    }

    #[test]
    fn mint_builds_the_name_and_checks_it() {
        let name = VmName::mint("askari", "1a2b3c4d", &real()).unwrap();
        assert_eq!(name.as_str(), "boma-it-askari-1a2b3c4d");
        assert_eq!(
            VmName::mint("Ask_ari", "1a2b3c4d", &real()),
            Err(NameRefusal::BadHost {
                host: "Ask_ari".into()
            })
        );
        assert!(matches!(
            VmName::mint(&"x".repeat(60), "1a2b3c4d", &real()),
            Err(NameRefusal::NotHostName { .. })
        ));
    }

    #[test]
    fn a_real_host_is_refused_before_anything_else() {
        assert!(matches!(
            VmName::checked("boma-it-evil", &real()),
            Err(NameRefusal::RealHost { .. })
        ));
        assert!(matches!(
            VmName::checked("askari", &real()),
            Err(NameRefusal::RealHost { .. })
        ));
    }

    #[test]
    fn shape_rules() {
        for bad in [
            "giraffe",
            "boma-it-",
            "boma-it-x-",
            "boma-it-A",
            "boma-it-a.b",
        ] {
            assert!(VmName::parse(bad).is_err(), "{bad}");
        }
        assert!(VmName::parse(&format!("boma-it-{}", "x".repeat(55))).is_ok());
        assert!(VmName::parse(&format!("boma-it-{}", "x".repeat(56))).is_err());
    }

    #[test]
    fn deserialising_checks_the_shape() {
        let ok: VmName = serde_json::from_str("\"boma-it-askari-1\"").unwrap();
        assert_eq!(ok.as_str(), "boma-it-askari-1");
        let err = serde_json::from_str::<VmName>("\"askari\"").unwrap_err();
        assert!(err.to_string().contains("must start with"), "{err}");
    }

    #[test]
    fn prefix_is_recognised_in_any_case() {
        assert!(has_test_prefix("BOMA-IT-x"));
        assert!(!has_test_prefix("boma-i"));
        // A multi-byte character across the prefix's end is no prefix (and no panic).
        assert!(!has_test_prefix("boma-itü"));
        assert!(!has_test_prefix("askari"));
    }
}
