//! The harness's connection variables file (passed as the last `-e @file` of every run).

use boma_inventory::{VmConnection, render_connection_vars};
use camino::Utf8Path;

#[test]
fn connection_vars_json() {
    let vm = VmConnection {
        host: "127.0.0.1",
        port: 40022,
        user: "ansible",
        ssh_private_key_file: Utf8Path::new("/root/.local/state/boma-it/ssh/id_ed25519"),
        connect_dir: Utf8Path::new("/src/boma/tests/integration/.run/boma-it-askari-1/connect"),
    };
    let text = render_connection_vars(&vm).unwrap();
    // Plain JSON: what Ansible's loader reads back as these exact strings and numbers.
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed["ansible_ssh_port"], 40022);
    assert_eq!(parsed["ansible_connection"], "ansible.builtin.ssh");
    assert_eq!(parsed["ansible_pipelining"], true);
    insta::assert_snapshot!("connection_vars_json", text);
}
