//! The run's table: which destinations are the run's VMs (by inventory name, by address, or by
//! any further name a caller gives, such as a fleet address standing for a VM's loopback
//! forward) and the endpoint each one means; the ssh client the wrapper becomes; the run's
//! command log. Checked once ([`Table::new`]): no destination may mean two endpoints.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};

use crate::endpoint::{Endpoint, EndpointError, EndpointSpec};

/// One VM of the run and the destinations that mean it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    endpoint: Endpoint,
    also: Vec<String>,
}

impl TableEntry {
    /// `endpoint`, reached as its alias, its address, and each of `also`.
    pub fn new(endpoint: Endpoint, also: Vec<String>) -> TableEntry {
        TableEntry { endpoint, also }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Every destination that means this VM.
    pub fn keys(&self) -> Vec<String> {
        let mut keys = vec![
            self.endpoint.alias().to_owned(),
            self.endpoint.address().to_string(),
        ];
        keys.extend(self.also.iter().cloned());
        keys.dedup();
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
    /// Destinations beyond the alias and the address that mean this VM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
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
            entries.push(TableEntry::new(Endpoint::new(vm.endpoint)?, vm.also));
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
