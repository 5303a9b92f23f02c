//! Counting what a run left behind: QEMU processes, run directories, sockets, the record.

use std::os::unix::fs::FileTypeExt;

use camino::{Utf8Path, Utf8PathBuf};

/// Everything of the harness's still on the machine.
#[derive(Debug, Default)]
pub struct Leftovers {
    pub processes: Vec<String>,
    pub run_dirs: Vec<Utf8PathBuf>,
    pub sockets: Vec<Utf8PathBuf>,
    pub current: bool,
}

impl Leftovers {
    pub fn total(&self) -> usize {
        self.processes.len() + self.run_dirs.len() + self.sockets.len() + usize::from(self.current)
    }

    pub fn describe(&self) -> String {
        format!(
            "{} process(es) {:?}, {} run dir(s) {:?}, {} socket(s) {:?}, current record: {}",
            self.processes.len(),
            self.processes,
            self.run_dirs.len(),
            self.run_dirs,
            self.sockets.len(),
            self.sockets,
            if self.current { "present" } else { "absent" }
        )
    }
}

/// Look, without trusting any record.
pub fn count(repo: &Utf8Path) -> Leftovers {
    let run = repo.join("tests/integration/.run");
    let processes = boma_vm::procs::vm_processes()
        .into_iter()
        .map(|p| format!("{} (pid {})", p.name, p.pid))
        .collect();
    let mut run_dirs = Vec::new();
    let mut sockets = Vec::new();
    if let Ok(entries) = run.read_dir_utf8() {
        for entry in entries.flatten() {
            if entry.file_name().starts_with(boma_vm::NAME_PREFIX) {
                run_dirs.push(entry.path().to_owned());
            }
        }
    }
    walk_sockets(&run, &mut sockets);
    Leftovers {
        processes,
        run_dirs,
        sockets,
        current: run.join("current").exists(),
    }
}

fn walk_sockets(dir: &Utf8Path, found: &mut Vec<Utf8PathBuf>) {
    let Ok(entries) = dir.read_dir_utf8() else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_socket() {
            found.push(entry.path().to_owned());
        } else if kind.is_dir() && !kind.is_symlink() {
            walk_sockets(entry.path(), found);
        }
    }
}
