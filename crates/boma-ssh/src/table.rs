//! The run's table: which destinations are the run's VMs (by inventory name, by address, or by
//! any further name a caller gives, such as a fleet address standing for a VM's loopback
//! forward) and the endpoint each one means; the ssh client the wrapper becomes; the run's
//! command log. Checked once ([`Table::new`]): no destination may mean two endpoints.
//!
//! A fleet's members all sit behind `127.0.0.1` (each its own forwarded port), so their loopback
//! address cannot be a destination: a member is reached by its name and its fleet address only
//! ([`TableEntry::by_names`]), which is also all a fleet run's Ansible ever asks for.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};

use crate::endpoint::{Endpoint, EndpointError, EndpointSpec};

/// One VM of the run and the destinations that mean it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    endpoint: Endpoint,
    also: Vec<String>,
    /// Whether the endpoint's address is a destination too (not for a fleet member, whose
    /// loopback address it shares with its peers).
    by_address: bool,
}

impl TableEntry {
    /// `endpoint`, reached as its alias, its address, and each of `also`.
    pub fn new(endpoint: Endpoint, also: Vec<String>) -> TableEntry {
        TableEntry {
            endpoint,
            also,
            by_address: true,
        }
    }

    /// `endpoint`, reached as its alias and each of `names` only — not as the address it
    /// really connects to (a fleet member: its inventory name and fleet address).
    pub fn by_names(endpoint: Endpoint, names: Vec<String>) -> TableEntry {
        TableEntry {
            endpoint,
            also: names,
            by_address: false,
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Every destination that means this VM.
    pub fn keys(&self) -> Vec<String> {
        let mut keys = vec![self.endpoint.alias().to_owned()];
        if self.by_address {
            keys.push(self.endpoint.address().to_string());
        }
        for key in &self.also {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        keys
    }
}

/// The run's VMs, as the ssh wrapper reads them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "TableSpec", into = "TableSpec")]
pub struct Table {
    ssh: Utf8PathBuf,
    log: Option<Utf8PathBuf>,
    entries: Vec<TableEntry>,
    /// Destination → index into `entries`.
    index: BTreeMap<String, usize>,
}

/// A table's parts before they are checked (and as the table file holds them).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// The ssh client the wrapper replaces itself with (absolute). The harness writes the real
    /// one; the fast tests name a recording stand-in.
    pub ssh: Utf8PathBuf,
    /// The run's command log, where the wrapper appends one line per connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<Utf8PathBuf>,
    pub vms: Vec<TableEntrySpec>,
}

/// One VM in the table file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableEntrySpec {
    pub endpoint: EndpointSpec,
    /// Destinations beyond the alias (and the address) that mean this VM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
    /// Whether the endpoint's address means this VM too ([`TableEntry::by_names`]: no).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub by_address: bool,
}

fn yes() -> bool {
    true
}

fn is_yes(value: &bool) -> bool {
    *value
}

/// Why a table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("a table of no vm: the wrapper would refuse every connection")]
    Empty,
    #[error("the ssh client `{0}` is not an absolute path")]
    Ssh(Utf8PathBuf),
    #[error("the command log `{0}` is not an absolute path")]
    Log(Utf8PathBuf),
    #[error("`{key}` means two vms ({first} and {second}): a destination must mean one")]
    Ambiguous {
        key: String,
        first: String,
        second: String,
    },
    #[error("{0}")]
    Endpoint(#[from] EndpointError),
}

impl Table {
    pub fn new(
        ssh: Utf8PathBuf,
        log: Option<Utf8PathBuf>,
        entries: Vec<TableEntry>,
    ) -> Result<Table, TableError> {
        if !ssh.is_absolute() {
            return Err(TableError::Ssh(ssh));
        }
        if let Some(log) = log.as_ref().filter(|l| !l.is_absolute()) {
            return Err(TableError::Log(log.clone()));
        }
        if entries.is_empty() {
            return Err(TableError::Empty);
        }
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        for (at, entry) in entries.iter().enumerate() {
            for key in entry.keys() {
                if let Some(&other) = index.get(&key)
                    && other != at
                {
                    return Err(TableError::Ambiguous {
                        key,
                        first: entries[other].endpoint.alias().to_owned(),
                        second: entry.endpoint.alias().to_owned(),
                    });
                }
                index.insert(key, at);
            }
        }
        Ok(Table {
            ssh,
            log,
            entries,
            index,
        })
    }

    /// The ssh client the wrapper becomes.
    pub fn ssh(&self) -> &Utf8Path {
        &self.ssh
    }

    /// The run's command log.
    pub fn log(&self) -> Option<&Utf8Path> {
        self.log.as_deref()
    }

    /// The endpoint a destination host means, if it is one of the run's VMs.
    pub fn endpoint_for(&self, host: &str) -> Option<&Endpoint> {
        self.index.get(host).map(|&at| &self.entries[at].endpoint)
    }

    /// The run's VMs by alias, for a refusal to name.
    pub fn aliases(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.endpoint.alias()).collect()
    }
}

impl TryFrom<TableSpec> for Table {
    type Error = TableError;
    fn try_from(spec: TableSpec) -> Result<Table, TableError> {
        let mut entries = Vec::new();
        for vm in spec.vms {
            let endpoint = Endpoint::new(vm.endpoint)?;
            entries.push(if vm.by_address {
                TableEntry::new(endpoint, vm.also)
            } else {
                TableEntry::by_names(endpoint, vm.also)
            });
        }
        Table::new(spec.ssh, spec.log, entries)
    }
}

impl From<Table> for TableSpec {
    fn from(table: Table) -> TableSpec {
        TableSpec {
            ssh: table.ssh,
            log: table.log,
            vms: table
                .entries
                .into_iter()
                .map(|e| TableEntrySpec {
                    endpoint: e.endpoint.into(),
                    also: e.also,
                    by_address: e.by_address,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(alias: &str, address: &str, port: u16) -> Endpoint {
        Endpoint::new(EndpointSpec {
            alias: alias.into(),
            address: address.parse().unwrap(),
            port,
            user: "ansible".into(),
            identity_file: "/k/id".into(),
            control_dir: None,
        })
        .unwrap()
    }

    #[test]
    fn each_destination_means_one_vm() {
        let table = Table::new(
            "/usr/bin/ssh".into(),
            None,
            vec![
                TableEntry::new(endpoint("boma-it-a-1", "127.0.0.1", 40022), vec![]),
                TableEntry::new(
                    endpoint("boma-it-b-1", "10.0.2.15", 22),
                    vec!["192.0.2.7".into()],
                ),
            ],
        )
        .unwrap();
        assert_eq!(table.endpoint_for("boma-it-a-1").unwrap().port(), 40022);
        assert_eq!(table.endpoint_for("127.0.0.1").unwrap().port(), 40022);
        assert_eq!(
            table.endpoint_for("192.0.2.7").unwrap().alias(),
            "boma-it-b-1"
        );
        assert!(table.endpoint_for("77.42.120.136").is_none());
        assert!(table.endpoint_for("127.0.0.01").is_none());

        // Two VMs behind one loopback address: the address would mean either.
        let err = Table::new(
            "/usr/bin/ssh".into(),
            None,
            vec![
                TableEntry::new(endpoint("boma-it-a-1", "127.0.0.1", 40022), vec![]),
                TableEntry::new(endpoint("boma-it-b-1", "127.0.0.1", 40023), vec![]),
            ],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`127.0.0.1` means two vms (boma-it-a-1 and boma-it-b-1): a destination must mean one"
        );
        assert_eq!(
            Table::new("/usr/bin/ssh".into(), None, vec![]),
            Err(TableError::Empty)
        );
        assert!(matches!(
            Table::new("ssh".into(), None, vec![]),
            Err(TableError::Ssh(_))
        ));
    }

    /// A fleet: every member behind 127.0.0.1 on its own port, each reached by its inventory
    /// name and its fleet address; the shared loopback address and a real host's address mean
    /// none of them.
    #[test]
    fn fleet_members_are_reached_by_name_and_fleet_address_only() {
        let member = |vm: &str, port: u16, name: &str, fleet: &str| {
            TableEntry::by_names(
                endpoint(vm, "127.0.0.1", port),
                vec![name.into(), fleet.into()],
            )
        };
        let table = Table::new(
            "/usr/bin/ssh".into(),
            None,
            vec![
                member("boma-it-askari-1", 40022, "askari", "10.231.0.10"),
                member("boma-it-ubongo-1", 40023, "ubongo", "10.231.0.11"),
            ],
        )
        .unwrap();
        for (destination, port) in [
            ("askari", 40022),
            ("10.231.0.10", 40022),
            ("boma-it-askari-1", 40022),
            ("ubongo", 40023),
            ("10.231.0.11", 40023),
        ] {
            assert_eq!(
                table.endpoint_for(destination).map(Endpoint::port),
                Some(port),
                "{destination}"
            );
        }
        for refused in [
            "127.0.0.1",
            "77.42.120.136",
            "10.231.0.12",
            "localhost",
            "Askari",
        ] {
            assert!(table.endpoint_for(refused).is_none(), "{refused}");
        }
        // What the wrapper then does with the real askari's address: refuses it.
        let argv: Vec<String> = ["-o", "Port=22", "77.42.120.136", "/bin/sh", "-c", "true"]
            .map(str::to_owned)
            .to_vec();
        let refusal = crate::wrap(&table, &argv).unwrap_err().to_string();
        assert!(
            refusal.starts_with("refusing ssh to 77.42.120.136: not a vm of this run"),
            "{refusal}"
        );
        let json = serde_json::to_string(&table).unwrap();
        assert!(json.contains("\"by_address\":false"), "{json}");
        assert_eq!(serde_json::from_str::<Table>(&json).unwrap(), table);
        // Two members given one fleet address: refused, as any destination meaning two.
        let err = Table::new(
            "/usr/bin/ssh".into(),
            None,
            vec![
                member("boma-it-askari-1", 40022, "askari", "10.231.0.10"),
                member("boma-it-ubongo-1", 40023, "ubongo", "10.231.0.10"),
            ],
        )
        .unwrap_err();
        assert!(matches!(err, TableError::Ambiguous { .. }), "{err}");
    }

    #[test]
    fn a_table_file_reads_back_through_its_checks() {
        let table = Table::new(
            "/usr/bin/ssh".into(),
            Some("/run/harness.log".into()),
            vec![TableEntry::new(
                endpoint("boma-it-a-1", "127.0.0.1", 40022),
                vec![],
            )],
        )
        .unwrap();
        let json = serde_json::to_string_pretty(&table).unwrap();
        let back: Table = serde_json::from_str(&json).unwrap();
        assert_eq!(back, table);
        assert!(serde_json::from_str::<Table>(&json.replace("40022", "0")).is_err());
        assert!(
            serde_json::from_str::<Table>(&json.replace("\"ssh\":", "\"ssh_program\":")).is_err()
        );
    }
}
