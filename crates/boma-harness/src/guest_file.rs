//! One file of the guest, read or removed as root over the harness's own ssh (never through
//! Ansible): what a verify playbook wrote on the VM, the CA certificate an https probe trusts.
//! The scripts and the reading of their answer are pure; [`read`] and [`remove`] run them.

use std::time::Duration;

use boma_vm::guest::ssh::SSH_FAILED;
use boma_vm::{Guest, RunRecord};

use crate::error::HarnessError;

/// A file the guest has, or has not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestFile {
    Present(String),
    Absent,
}

/// How long a read or a removal may take (one small file, under TCG).
const TIMEOUT: Duration = Duration::from_secs(60);

/// The script that prints `present` and then the file at `path`, or `absent`. Its first line
/// names what it reads, so the command log (and a fake guest) can tell. Pure.
pub fn read_script(path: &str) -> String {
    let quoted = shell_quoted(path);
    format!(
        "# boma-it read {}\nif [ -f {quoted} ]; then echo present; cat {quoted}; else echo absent; fi\n",
        comment(path)
    )
}

/// The script that removes the file at `path`, if it is there. Pure.
pub fn remove_script(path: &str) -> String {
    format!(
        "# boma-it remove {}\nrm -f {}\n",
        comment(path),
        shell_quoted(path)
    )
}

/// `text` fit for the rest of a comment line: a line break in it would end the comment.
fn comment(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// What [`read_script`] printed, or `None` when it printed neither answer. Pure.
pub fn parse_read(stdout: &str) -> Option<GuestFile> {
    let (first, rest) = stdout.split_once('\n').unwrap_or((stdout, ""));
    match first.trim_end() {
        "present" => Some(GuestFile::Present(rest.to_owned())),
        "absent" => Some(GuestFile::Absent),
        _ => None,
    }
}

/// `text` as one word of `sh`, whatever it holds.
fn shell_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The file at `path` on the run's guest.
pub fn read(guest: &dyn Guest, record: &RunRecord, path: &str) -> Result<GuestFile, HarnessError> {
    let out = run(guest, record, &read_script(path), path)?;
    parse_read(&out).ok_or_else(|| {
        HarnessError::Vm(boma_vm::VmError::Backend(format!(
            "cannot read {path} on {}: the guest answered {:?}",
            record.name,
            out.lines().next().unwrap_or_default()
        )))
    })
}

/// Remove the file at `path` on the run's guest (nothing when it is not there).
pub fn remove(guest: &dyn Guest, record: &RunRecord, path: &str) -> Result<(), HarnessError> {
    run(guest, record, &remove_script(path), path).map(drop)
}

fn run(
    guest: &dyn Guest,
    record: &RunRecord,
    script: &str,
    path: &str,
) -> Result<String, HarnessError> {
    let out = guest.run_script(&record.ssh, script, TIMEOUT)?;
    if out.status.code() == Some(SSH_FAILED) || !out.success() {
        return Err(HarnessError::Vm(boma_vm::VmError::Backend(format!(
            "cannot reach {path} on {}: {}",
            record.name,
            out.stderr.trim()
        ))));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_script_answers_present_with_the_text_or_absent() {
        let script = read_script("/run/boma-it/verify-results-0.json");
        assert_eq!(
            script,
            "# boma-it read /run/boma-it/verify-results-0.json\n\
             if [ -f '/run/boma-it/verify-results-0.json' ]; then echo present; \
             cat '/run/boma-it/verify-results-0.json'; else echo absent; fi\n"
        );
        assert_eq!(
            parse_read("present\n{\"checks\": []}\n"),
            Some(GuestFile::Present("{\"checks\": []}\n".into()))
        );
        assert_eq!(
            parse_read("present\n"),
            Some(GuestFile::Present(String::new()))
        );
        assert_eq!(parse_read("absent\n"), Some(GuestFile::Absent));
        assert_eq!(parse_read(""), None);
        assert_eq!(parse_read("sudo: a password is required\n"), None);
    }

    #[test]
    fn a_path_is_one_word_whatever_it_holds() {
        assert_eq!(
            remove_script("/srv/it's here/a b"),
            "# boma-it remove /srv/it's here/a b\nrm -f '/srv/it'\\''s here/a b'\n"
        );
        let script = remove_script("/x\nreboot");
        assert_eq!(script, "# boma-it remove /x?reboot\nrm -f '/x\nreboot'\n");
    }
}
