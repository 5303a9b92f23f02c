//! What the integration tests share: the run's one VM, as a table.

use boma_ssh::{Endpoint, EndpointSpec, Table, TableEntry};

pub const VM: &str = "boma-it-askari-20260101-0000";
pub const KEY: &str = "/var/lib/boma/ssh/id_ed25519";
pub const CONTROL: &str = "/tmp/boma-ssh-0123456789abcdef";

/// A table of one VM, `VM`, at 127.0.0.1:40022 as `ansible`, with a control directory.
pub fn table() -> Table {
    let endpoint = Endpoint::new(EndpointSpec {
        alias: VM.into(),
        address: "127.0.0.1".parse().unwrap(),
        port: 40022,
        user: "ansible".into(),
        identity_file: KEY.into(),
        control_dir: Some(CONTROL.into()),
    })
    .unwrap();
    Table::new(
        "/usr/bin/ssh".into(),
        None,
        vec![TableEntry::new(endpoint, vec![])],
    )
    .unwrap()
}
