//! A run's own files in its VM directory: the transient inventory, the variable files every
//! `ansible-playbook` gets, the checks' results, the folded Ansible log, the captured states.
//!
//! The harness writes these directly (they are the run's records, not effects on the machine
//! under test); the renderers that produce their contents are pure and live in the crates.

use boma_vm::RunRecord;
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::json;

use crate::HarnessError;
use crate::preflight::Inputs;

/// The paths of one run's files.
#[derive(Debug, Clone)]
pub struct RunFiles {
    pub dir: Utf8PathBuf,
}

impl RunFiles {
    pub fn of(record: &RunRecord) -> RunFiles {
        RunFiles {
            dir: record.dir.clone(),
        }
    }

    /// The transient inventory directory (`hosts.yml` + the real `group_vars`, linked).
    pub fn inventory(&self) -> Utf8PathBuf {
        self.dir.join("inventory")
    }
    /// The run's variables for verify playbook `index`.
    pub fn harness_vars(&self, index: usize) -> Utf8PathBuf {
        self.dir.join(format!("harness-vars-{index}.json"))
    }
    /// The harness's own connection variables, the last `-e` file of every run.
    pub fn connection_vars(&self) -> Utf8PathBuf {
        self.dir.join("connection-vars.json")
    }
    /// The run's connection directory: the table, the ssh wrapper, the refusing scp and sftp.
    pub fn connect_dir(&self) -> Utf8PathBuf {
        self.dir.join("connect")
    }
    /// The control socket directory of the run's ssh (under `/tmp`, short).
    pub fn control_dir(&self) -> Utf8PathBuf {
        crate::connect::control_dir(&self.dir)
    }
    /// The copy of what verify playbook `index` wrote on the VM (the bundle keeps it).
    pub fn results(&self, index: usize) -> Utf8PathBuf {
        self.dir.join(format!("verify-results-{index}.json"))
    }
    /// The directory holding only the CA certificate an https probe of `port` trusts, copied
    /// from the guest.
    pub fn probe_ca(&self, port: u16) -> Utf8PathBuf {
        self.dir.join(format!("probe-ca-{port}"))
    }
    /// Tasks the second apply changed (the idempotence check).
    pub fn changes(&self) -> Utf8PathBuf {
        self.dir.join("idempotence-changes.jsonl")
    }
    /// Ansible's output, folded from the terminal.
    pub fn ansible_log(&self) -> Utf8PathBuf {
        self.dir.join("ansible.log")
    }
    pub fn state_before(&self) -> Utf8PathBuf {
        self.dir.join("state-before.json")
    }
    pub fn state_after(&self) -> Utf8PathBuf {
        self.dir.join("state-after.json")
    }
    pub fn reboot_diff(&self) -> Utf8PathBuf {
        self.dir.join("reboot-diff.txt")
    }
    /// Ansible's fact cache for this boot of the VM.
    pub fn facts(&self) -> Utf8PathBuf {
        self.dir.join("facts")
    }

    /// Forget the cached facts: the guest rebooted, so they describe a boot that is over.
    pub fn forget_facts(&self) {
        let _ = std::fs::remove_dir_all(self.facts());
    }

    /// Everything the run said on stderr (the command log).
    pub fn harness_log(&self) -> Utf8PathBuf {
        self.dir.join("harness.log")
    }

    /// The files a diagnostics bundle copies, when they exist.
    pub fn evidence(&self) -> Vec<Utf8PathBuf> {
        let mut files = vec![
            self.harness_log(),
            self.ansible_log(),
            self.changes(),
            self.state_before(),
            self.state_after(),
            self.reboot_diff(),
            self.reboot_diff().with_extension("json"),
        ];
        if let Ok(entries) = self.dir.read_dir_utf8() {
            let mut results: Vec<Utf8PathBuf> = entries
                .flatten()
                .map(|e| e.path().to_owned())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.starts_with("verify-results-"))
                })
                .collect();
            results.sort();
            files.extend(results);
        }
        files
    }
}

/// Write `text` to `path`.
pub fn write(path: &Utf8Path, text: &str) -> Result<(), HarnessError> {
    std::fs::write(path, text).map_err(|e| HarnessError::io(path, e))
}

/// Render and write the transient inventory and the run's variable files.
pub fn write_run_files(
    repo: &Utf8Path,
    inputs: &Inputs,
    record: &RunRecord,
    files: &RunFiles,
) -> Result<(), HarnessError> {
    let host = boma_inventory::TransientHost {
        vm: &record.name,
        groups: &inputs.profile.groups,
        group_parents: &inputs.group_parents,
    };
    let hosts = boma_inventory::render_hosts_yml(&host)?;
    boma_inventory::write_inventory_dir(&files.inventory(), repo, &hosts)?;
    write_connection(record, files)?;
    for index in 0..inputs.profile.verify.len() {
        let vars = harness_vars(
            record.name.as_str(),
            &inputs.fleet_addresses,
            &crate::verify::guest_results_file(index),
        );
        write(
            &files.harness_vars(index),
            &serde_json::to_string_pretty(&vars).expect("json"),
        )?;
    }
    Ok(())
}

/// The run's connection ([`crate::connect::write_connection`]), with this program as the
/// wrapper and the ssh client on PATH. Written again whenever the VM's address may have moved
/// (after a reboot).
fn write_connection(record: &RunRecord, files: &RunFiles) -> Result<(), HarnessError> {
    let (wrapper, ssh) = connection_programs()?;
    crate::connect::write_connection(
        files,
        &crate::connect::Setup {
            vm: &record.name,
            target: &record.ssh,
            wrapper: &wrapper,
            ssh: &ssh,
        },
    )
}

/// The programs of a run's connection: the wrapper, which is this very program
/// (`connect-ssh`, found again by path when Ansible runs it), and the ssh client on `PATH`.
pub(crate) fn connection_programs() -> Result<(Utf8PathBuf, Utf8PathBuf), HarnessError> {
    let ssh = boma_exec::find_on_path("ssh")
        .and_then(|p| Utf8PathBuf::from_path_buf(p).ok())
        .ok_or_else(|| {
            HarnessError::Connection(format!(
                "`ssh` is not on PATH: {}",
                boma_exec::package_hint("ssh").unwrap_or("install it")
            ))
        })?;
    let wrapper = std::env::current_exe()
        .ok()
        .and_then(|p| Utf8PathBuf::from_path_buf(p).ok())
        .ok_or_else(|| HarnessError::Connection("cannot tell this program's own path".into()))?;
    Ok((wrapper, ssh))
}

/// The verify playbooks' inputs: the hosts the play runs on (the VM's inventory name; a fleet's
/// members, `a,b`), the real fleet's addresses (the VM must have no
/// route to them), and where on the VM to write the results (`results_on_guest`, a path the
/// harness reads back over its own ssh). Pure.
///
/// Where the controller reaches the published ports is not among them: a verify playbook runs
/// on the VM only, and the controller's probes are the harness's (`published_ports`).
pub fn harness_vars(
    hosts: &str,
    fleet: &[std::net::IpAddr],
    results_on_guest: &Utf8Path,
) -> serde_json::Value {
    json!({
        "boma_it_vm_name": hosts,
        "boma_it_fleet_addresses": fleet.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "boma_it_results_file": results_on_guest,
    })
}
