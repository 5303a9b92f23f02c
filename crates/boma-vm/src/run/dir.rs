//! The layout of a run directory: every file any crate keeps in a VM's directory under the
//! runs root (`tests/integration/.run/<vm>/`), named once, here. The lifecycle's files (the
//! overlay, the seed, the serial console, the record), the hypervisor's (QMP socket,
//! pidfile) and the harness's (inventory, variable files, captures, the reboot diff, logs)
//! alike: whoever reads or writes one asks [`RunDir`] for its path. Pure: it names paths, it
//! touches none.

use camino::{Utf8Path, Utf8PathBuf};

/// The serial console's log (appended to by every QEMU of the VM).
pub const CONSOLE_LOG: &str = "console.log";
/// The run record (`RunRecord`, JSON).
pub const RECORD: &str = "run.json";
/// QEMU's QMP socket.
pub const QMP_SOCKET: &str = "qmp.sock";
/// QEMU's pidfile.
pub const PIDFILE: &str = "qemu.pid";
/// The spawn journal, in the runs root (beside the VMs' directories): every process the
/// harness started (pid, group, start time), so `prune` stops exactly those.
pub const JOURNAL: &str = "spawned.jsonl";
/// What every verify playbook's results file is named from (`verify-results-<n>.json`).
const VERIFY_RESULTS: &str = "verify-results-";

/// One VM's run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: Utf8PathBuf,
}

impl RunDir {
    pub fn new(path: impl Into<Utf8PathBuf>) -> RunDir {
        RunDir { path: path.into() }
    }

    /// The directory itself.
    pub fn path(&self) -> &Utf8Path {
        &self.path
    }

    /// The VM's disk: a qcow2 overlay on the golden image or a layer.
    pub fn overlay(&self) -> Utf8PathBuf {
        self.path.join("overlay.qcow2")
    }
    /// A new overlay made beside the old one before it is renamed over it (a layer taken).
    pub fn overlay_replacement(&self) -> Utf8PathBuf {
        self.path.join("overlay.qcow2.new")
    }
    /// The NoCloud seed image.
    pub fn seed(&self) -> Utf8PathBuf {
        self.path.join("seed.img")
    }
    /// The seed's documents, kept beside it.
    pub fn user_data(&self) -> Utf8PathBuf {
        self.path.join("user-data")
    }
    pub fn meta_data(&self) -> Utf8PathBuf {
        self.path.join("meta-data")
    }
    pub fn network_config(&self) -> Utf8PathBuf {
        self.path.join("network-config")
    }
    pub fn console_log(&self) -> Utf8PathBuf {
        self.path.join(CONSOLE_LOG)
    }
    /// The run record (`run.json`).
    pub fn record(&self) -> Utf8PathBuf {
        self.path.join(RECORD)
    }
    pub fn qmp_socket(&self) -> Utf8PathBuf {
        self.path.join(QMP_SOCKET)
    }
    pub fn pidfile(&self) -> Utf8PathBuf {
        self.path.join(PIDFILE)
    }

    /// The transient inventory directory (`hosts.yml` + the real `group_vars`, linked).
    pub fn inventory(&self) -> Utf8PathBuf {
        self.path.join("inventory")
    }
    /// The run's variables for verify playbook `index`.
    pub fn harness_vars(&self, index: usize) -> Utf8PathBuf {
        self.path.join(format!("harness-vars-{index}.json"))
    }
    /// The harness's own connection variables, the last `-e` file of every run.
    pub fn connection_vars(&self) -> Utf8PathBuf {
        self.path.join("connection-vars.json")
    }
    /// The run's connection directory: the table, the ssh wrapper, the refusing scp and sftp.
    pub fn connect_dir(&self) -> Utf8PathBuf {
        self.path.join("connect")
    }
    /// The copy of what verify playbook `index` wrote on the VM (the bundle keeps it).
    pub fn verify_results(&self, index: usize) -> Utf8PathBuf {
        self.path.join(format!("{VERIFY_RESULTS}{index}.json"))
    }
    /// Whether `file_name` is a verify playbook's results copy ([`RunDir::verify_results`]).
    pub fn is_verify_results(file_name: &str) -> bool {
        file_name.starts_with(VERIFY_RESULTS)
    }
    /// The directory holding only the CA certificate an https probe of `port` trusts, copied
    /// from the guest.
    pub fn probe_ca(&self, port: u16) -> Utf8PathBuf {
        self.path.join(format!("probe-ca-{port}"))
    }
    /// Tasks the second apply changed (the idempotence check).
    pub fn idempotence_changes(&self) -> Utf8PathBuf {
        self.path.join("idempotence-changes.jsonl")
    }
    /// Ansible's output, folded from the terminal.
    pub fn ansible_log(&self) -> Utf8PathBuf {
        self.path.join("ansible.log")
    }
    /// Everything the run said on stderr (the command log).
    pub fn harness_log(&self) -> Utf8PathBuf {
        self.path.join("harness.log")
    }
    /// The guest's state captured before the reboot.
    pub fn state_before(&self) -> Utf8PathBuf {
        self.path.join("state-before.json")
    }
    /// The guest's state captured after the reboot.
    pub fn state_after(&self) -> Utf8PathBuf {
        self.path.join("state-after.json")
    }
    /// The reboot diff as text.
    pub fn reboot_diff(&self) -> Utf8PathBuf {
        self.path.join("reboot-diff.txt")
    }
    /// The reboot diff as JSON.
    pub fn reboot_diff_json(&self) -> Utf8PathBuf {
        self.path.join("reboot-diff.json")
    }
    /// Ansible's fact cache for this boot of the VM.
    pub fn facts(&self) -> Utf8PathBuf {
        self.path.join("facts")
    }
    /// Where the reboot test of step `step` (counted from 1: the power cycle that stores its
    /// layer) keeps its captures and its diff, named as the run's own.
    pub fn step(&self, step: usize) -> RunDir {
        RunDir::new(self.path.join(format!("step-{step}")))
    }

    /// The run's own records a diagnostics bundle copies when they exist, besides the verify
    /// results ([`RunDir::is_verify_results`]).
    pub fn evidence(&self) -> Vec<Utf8PathBuf> {
        vec![
            self.harness_log(),
            self.ansible_log(),
            self.idempotence_changes(),
            self.state_before(),
            self.state_after(),
            self.reboot_diff(),
            self.reboot_diff_json(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_files_and_verify_results_are_named_apart() {
        let run = RunDir::new("/runs/boma-it-askari-1");
        assert_eq!(
            run.step(2).state_before(),
            "/runs/boma-it-askari-1/step-2/state-before.json"
        );
        assert_eq!(
            run.reboot_diff_json(),
            run.reboot_diff().with_extension("json")
        );
        assert!(RunDir::is_verify_results(
            run.verify_results(3).file_name().unwrap()
        ));
        assert!(!RunDir::is_verify_results("harness-vars-3.json"));
    }
}
