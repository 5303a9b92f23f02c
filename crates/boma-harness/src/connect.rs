//! The run's connection, by construction: every ssh an Ansible run opens goes through the
//! run's own wrapper, which rebuilds its command line from the run's table
//! ([`boma_ssh::wrap`]) and then becomes `ssh`.
//!
//! Per run, `<run>/connect/` holds:
//! - `table.json`: the run's VM (by name and address), the real ssh client, the command log;
//! - `ssh`: `exec <harness> connect-ssh <table> -- "$@"`, named by the connection file as
//!   `ansible_ssh_executable` and first on Ansible's `PATH`, so an `ssh` that Ansible or a
//!   controller-side module starts from `PATH` (a `pipe` lookup, `synchronize`) is wrapped too;
//! - `scp`, `sftp`: shims that refuse and say so in the command log (transfers are `piped`
//!   through the wrapper).
//!
//! A fleet run's table holds each member by its inventory name and its fleet address
//! ([`fleet_table`]), the names its connection file makes Ansible ask for; the member's
//! loopback address, which all members share, means none of them.
//!
//! The control sockets of Ansible's master connections live in a short directory under `/tmp`
//! (a unix socket path must fit 104 bytes), private to the run, made before each playbook run
//! and removed after it, its masters told to exit, so no master outlives the playbook that
//! opened it (nor a reboot between two playbooks).

use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};

use boma_exec::{CmdExt as _, say};
use boma_inventory::{
    FleetConnection, MemberName, SCP_PROGRAM, SFTP_PROGRAM, SSH_PROGRAM, VmConnection, VmName,
};
use boma_ssh::{Endpoint, EndpointSpec, Table, TableEntry};
use boma_vm::{RunDir, SshTarget};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{Shell, cmd};

use crate::error::HarnessError;

/// The hidden subcommand of the harness's binary that is the wrapper.
pub const SUBCOMMAND: &str = "connect-ssh";
/// The table's file in the connection directory.
pub const TABLE_FILE: &str = "table.json";
/// ssh's own failure status: what Ansible reads as "unreachable", not as a failed command.
/// ssh's own failure status: what the wrapper exits with when it refuses.
pub const SSH_FAILED: u8 = 255;
/// Where the run's control directory goes: short, whatever `TMPDIR` says.
const CONTROL_PREFIX: &str = "/tmp/boma-ssh-";

/// The control socket directory of the run whose directory is `run_dir`: under `/tmp`, short
/// enough for a socket path, the same for every playbook of the run. Pure.
pub fn control_dir(run_dir: &Utf8Path) -> Utf8PathBuf {
    let mut hasher = DefaultHasher::new();
    run_dir.hash(&mut hasher);
    Utf8PathBuf::from(format!("{CONTROL_PREFIX}{:016x}", hasher.finish()))
}

/// The run's table: its VM (`vm`, reached as `target` says) by inventory name or address,
/// through `ssh` (the real client), with one line per connection in `log`; the control
/// sockets in [`control_dir`] of `run_dir`.
pub fn table(
    vm: &VmName,
    target: &SshTarget,
    run_dir: &Utf8Path,
    ssh: &Utf8Path,
    log: &Utf8Path,
) -> Result<Table, HarnessError> {
    let endpoint = endpoint(vm, target, run_dir)?;
    Table::new(
        ssh.to_owned(),
        Some(log.to_owned()),
        vec![TableEntry::new(endpoint, Vec::new())],
    )
    .map_err(|e| HarnessError::Connection(e.to_string()))
}

/// Where the harness's ssh reaches `vm`, as the wrapper pins it.
fn endpoint(vm: &VmName, target: &SshTarget, run_dir: &Utf8Path) -> Result<Endpoint, HarnessError> {
    let address = target.host.parse().map_err(|_| {
        HarnessError::Connection(format!(
            "the vm's address `{}` is not an ip address: the run's ssh connects only to addresses",
            target.host
        ))
    })?;
    Endpoint::new(EndpointSpec {
        alias: vm.to_string(),
        address,
        port: target.port,
        user: target.user.clone(),
        identity_file: target.key.clone(),
        control_dir: Some(control_dir(run_dir)),
    })
    .map_err(|e| HarnessError::Connection(e.to_string()))
}

/// A fleet member as the run's table knows it.
#[derive(Debug, Clone, Copy)]
pub struct FleetMember<'a> {
    /// Its VM.
    pub vm: &'a VmName,
    /// Its inventory name (the name roles see).
    pub name: &'a MemberName,
    /// Its fleet address (its `boma_fleet_address`).
    pub address: Ipv4Addr,
    /// Where the harness's ssh reaches it: its loopback forward (QEMU) or its lease (libvirt).
    pub target: &'a SshTarget,
}

/// A fleet run's table: each member reached by its inventory name and its fleet address (what
/// the fleet's connection file makes Ansible ask for: `ansible_host` is the member's
/// `boma_fleet_address`) and by its VM's name, each meaning that member's endpoint; the
/// members' own addresses (one loopback address for all of them under QEMU) mean nothing, nor
/// does anything else — a real host's name or address is refused.
pub fn fleet_table(
    members: &[FleetMember<'_>],
    run_dir: &Utf8Path,
    ssh: &Utf8Path,
    log: &Utf8Path,
) -> Result<Table, HarnessError> {
    let entries = members
        .iter()
        .map(|member| {
            let endpoint = endpoint(member.vm, member.target, run_dir)?;
            let names = vec![member.name.to_string(), member.address.to_string()];
            Ok(TableEntry::by_names(endpoint, names))
        })
        .collect::<Result<Vec<_>, HarnessError>>()?;
    Table::new(ssh.to_owned(), Some(log.to_owned()), entries)
        .map_err(|e| HarnessError::Connection(e.to_string()))
}

/// How a run's connection is set up: the VM, where ssh reaches it, the program that is the
/// wrapper (the harness's own binary), and the real ssh client the wrapper becomes.
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    pub vm: &'a VmName,
    pub target: &'a SshTarget,
    pub wrapper: &'a Utf8Path,
    pub ssh: &'a Utf8Path,
}

/// Write the run's connection: the connection directory (table, wrapper, refusing shims) and
/// the connection file that points every playbook run at it.
pub fn write_connection(files: &RunDir, setup: &Setup<'_>) -> Result<(), HarnessError> {
    let table = table(
        setup.vm,
        setup.target,
        files.path(),
        setup.ssh,
        &files.harness_log(),
    )?;
    let connect = files.connect_dir();
    write_connect_dir(&connect, setup.wrapper, &table)?;
    let connection = boma_inventory::render_connection_vars(&VmConnection {
        host: &setup.target.host,
        port: setup.target.port,
        user: &setup.target.user,
        ssh_private_key_file: &setup.target.key,
        connect_dir: &connect,
    })
    .map_err(|e| HarnessError::Connection(e.to_string()))?;
    crate::files::write(&files.connection_vars(), &connection)
}

/// How a fleet run's connection is set up: its members, the wrapper, the real ssh client.
#[derive(Debug, Clone, Copy)]
pub struct FleetSetup<'a> {
    pub members: &'a [FleetMember<'a>],
    pub wrapper: &'a Utf8Path,
    pub ssh: &'a Utf8Path,
}

/// Write a fleet run's connection (in the fleet run's files): the connection directory with
/// the members' table, and the fleet's connection file. Every member is reached as one user
/// with one key (the harness's): members that differ are refused.
pub fn write_fleet_connection(files: &RunDir, setup: &FleetSetup<'_>) -> Result<(), HarnessError> {
    let first = setup.members.first().ok_or_else(|| {
        HarnessError::Connection("a fleet's connection needs at least one member".into())
    })?;
    let (user, key) = (&first.target.user, &first.target.key);
    if let Some(other) = setup
        .members
        .iter()
        .find(|m| m.target.user != *user || m.target.key != *key)
    {
        return Err(HarnessError::Connection(format!(
            "the fleet's members are reached as one user with one key: {} is reached as {} with {}, {} as {} with {}",
            first.name, user, key, other.name, other.target.user, other.target.key
        )));
    }
    let table = fleet_table(setup.members, files.path(), setup.ssh, &files.harness_log())?;
    let connect = files.connect_dir();
    write_connect_dir(&connect, setup.wrapper, &table)?;
    let connection = boma_inventory::render_fleet_connection_vars(&FleetConnection {
        user,
        ssh_private_key_file: key,
        connect_dir: &connect,
    })
    .map_err(|e| HarnessError::Connection(e.to_string()))?;
    crate::files::write(&files.connection_vars(), &connection)
}

/// `text` as one word for `sh`, whatever it holds.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The run's `ssh`: the harness's binary as the wrapper, reading `table`. Pure.
pub fn ssh_shim(exe: &Utf8Path, table: &Utf8Path) -> String {
    format!(
        "#!/bin/sh\n# The run's ssh, written by the harness: every command line is rebuilt for the \
         run's vm.\nexec {} {SUBCOMMAND} {} -- \"$@\"\n",
        sh_quote(exe.as_str()),
        sh_quote(table.as_str())
    )
}

/// A shim for `program` (`scp`, `sftp`) that refuses, saying so in `log` and on stderr. Pure.
pub fn refusing_shim(program: &str, log: &Utf8Path) -> String {
    let message = format!(
        "refusing {program}: the run moves files only through its ssh wrapper (ansible_ssh_transfer_method: piped)"
    );
    format!(
        "#!/bin/sh\n# Written by the harness: the run has no {program}.\nprintf '%s\\n' \"refused \
         {program} $*\" >> {}\necho {} >&2\nexit {SSH_FAILED}\n",
        sh_quote(log.as_str()),
        sh_quote(&message)
    )
}

/// Write the connection directory `dir`: the table, the `ssh` wrapper (run as `exe`), and the
/// refusing `scp` and `sftp`.
pub fn write_connect_dir(
    dir: &Utf8Path,
    exe: &Utf8Path,
    table: &Table,
) -> Result<(), HarnessError> {
    std::fs::create_dir_all(dir).map_err(|e| HarnessError::io(dir, e))?;
    let table_path = dir.join(TABLE_FILE);
    let json = serde_json::to_string_pretty(table).expect("a table serialises");
    write_file(&table_path, &format!("{json}\n"), 0o644)?;
    write_file(&dir.join(SSH_PROGRAM), &ssh_shim(exe, &table_path), 0o755)?;
    let log = table.log().unwrap_or(Utf8Path::new("/dev/null"));
    for program in [SCP_PROGRAM, SFTP_PROGRAM] {
        write_file(&dir.join(program), &refusing_shim(program, log), 0o755)?;
    }
    Ok(())
}

/// Written aside and renamed: a playbook that starts the wrapper never reads half a file.
fn write_file(path: &Utf8Path, text: &str, mode: u32) -> Result<(), HarnessError> {
    let partial = path.with_extension("part");
    std::fs::write(&partial, text).map_err(|e| HarnessError::io(&partial, e))?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(mode))
        .map_err(|e| HarnessError::io(&partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| HarnessError::io(path, e))
}

/// Make the control directory `dir` for one playbook run: new, mode 0700, ours. One left by a
/// killed run of ours is emptied and reused; anything else there (another user's directory, a
/// link) is refused: its sockets would be someone else's.
pub fn open_control_dir(dir: &Utf8Path) -> Result<(), HarnessError> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(HarnessError::io(dir, e)),
    }
    let meta = dir
        .symlink_metadata()
        .map_err(|e| HarnessError::io(dir, e))?;
    let ours =
        meta.is_dir() && meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o077 == 0;
    if !ours {
        return Err(HarnessError::Connection(format!(
            "refusing the control directory {dir}: it exists and is not this user's private directory (mode 0700); remove it"
        )));
    }
    for entry in dir.read_dir_utf8().map_err(|e| HarnessError::io(dir, e))? {
        let path = entry.map_err(|e| HarnessError::io(dir, e))?.into_path();
        let _ = std::fs::remove_file(&path);
    }
    Ok(())
}

/// End the playbook run's master connections (`ssh -O exit` on each control socket) and remove
/// the control directory. A master left to end on its own a minute later would unlink the
/// socket path the next playbook's master has taken by then (the path is the same for the whole
/// run), and could outlive a reboot of the guest it is connected to.
pub fn close_control_dir(sh: &Shell, dir: &Utf8Path) {
    let sockets: Vec<Utf8PathBuf> = dir
        .read_dir_utf8()
        .map(|entries| entries.flatten().map(|e| e.into_path()).collect())
        .unwrap_or_default();
    for socket in sockets {
        // No config, and the socket given whole: this only talks to the local master.
        let control = format!("ControlPath=\"{socket}\"");
        let _ = cmd!(sh, "ssh -F /dev/null -o {control} -O exit -- master")
            .exec()
            .quiet()
            .allow_fail()
            .uninterruptible()
            .timeout(std::time::Duration::from_secs(10))
            .run();
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// `connect-ssh <table> -- <args…>`: the wrapper. Rebuilds Ansible's ssh command line for the
/// run's VM, appends one line to the run's command log (never to stderr, which Ansible reads
/// as ssh's), and becomes `ssh`: it returns only when it refused, said in one line on stderr
/// (the caller then exits with [`SSH_FAILED`], ssh's own failure status); nothing is connected.
pub fn connect_ssh(table_path: &Utf8Path, args: &[String]) {
    let table: Table = match std::fs::read_to_string(table_path)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(table) => table,
        Err(e) => {
            say!("refusing ssh: cannot read the run's table {table_path}: {e}");
            return;
        }
    };
    let wrapped = match boma_ssh::wrap(&table, args) {
        Ok(wrapped) => wrapped,
        Err(refusal) => {
            log_line(
                &table,
                &format!("{refusal} (from ansible: {})", args.join(" ")),
            );
            say!("{refusal}");
            return;
        }
    };
    log_line(&table, &describe(&table, &wrapped));
    let error = boma_exec::replace_process(table.ssh().as_std_path(), &wrapped);
    say!("refusing ssh: cannot run {}: {error}", table.ssh());
}

/// The command log's line for a wrapped connection: the endpoint instead of the whole pinned
/// option list, then what follows it.
fn describe(table: &Table, wrapped: &[String]) -> String {
    let rest = wrapped
        .iter()
        .position(|a| a == "--")
        .map_or(wrapped, |at| &wrapped[at..]);
    let endpoint = rest.get(1).and_then(|alias| table.endpoint_for(alias));
    let pinned = endpoint.map_or(0, |e| boma_ssh::pinned_options(e).len());
    let kept = &wrapped[pinned.min(wrapped.len())..];
    match endpoint {
        Some(e) => format!(
            "+ {} [pinned: {}:{} as {}] {}",
            table.ssh(),
            e.address(),
            e.port(),
            e.user(),
            kept.join(" ")
        ),
        None => format!("+ {} {}", table.ssh(), wrapped.join(" ")),
    }
}

/// Append `line` to the run's command log; a log that cannot be written never stops ssh.
fn log_line(table: &Table, line: &str) {
    let Some(log) = table.log() else { return };
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
    {
        // One write: lines of parallel connections never interleave.
        let _ = file.write_all(format!("{line}\n").as_bytes());
    }
}

/// The connection plugin files beside `playbooks` (their directories' `connection_plugins/`)
/// and in the roles under `repo/roles`: Ansible imports each on the controller when a playbook
/// starts, though none can be the run's connection (it pins `ansible.builtin.ssh`).
pub fn connection_plugin_files(repo: &Utf8Path, playbooks: &[Utf8PathBuf]) -> Vec<Utf8PathBuf> {
    let mut dirs: BTreeSet<Utf8PathBuf> = playbooks
        .iter()
        .filter_map(|p| repo.join(p).parent().map(|d| d.join("connection_plugins")))
        .collect();
    if let Ok(roles) = repo.join("roles").read_dir_utf8() {
        dirs.extend(
            roles
                .flatten()
                .map(|role| role.path().join("connection_plugins")),
        );
    }
    let mut files = Vec::new();
    for dir in dirs {
        if let Ok(entries) = dir.read_dir_utf8() {
            files.extend(
                entries
                    .flatten()
                    .map(|e| e.into_path())
                    .filter(|p| p.extension() == Some("py")),
            );
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|f| f.strip_prefix(repo).map(Utf8Path::to_owned).unwrap_or(f))
        .collect()
}

/// One note naming the connection plugin files a run will load: harmless as the connection,
/// but their import-time code runs on the controller. Pure.
pub fn connection_plugin_note(files: &[Utf8PathBuf]) -> Option<String> {
    (!files.is_empty()).then(|| {
        let names: Vec<&str> = files.iter().map(|f| f.as_str()).collect();
        format!(
            "note: {}: connection plugins beside a playbook or in a role are never the run's connection (it pins ansible.builtin.ssh), but ansible imports them on this machine when a playbook starts",
            names.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_directory_is_short_private_to_the_run_and_stable() {
        let a = control_dir(Utf8Path::new(
            "/home/ci/builds/a/very/long/checkout/path/tests/integration/.run/boma-it-askari-1",
        ));
        let b = control_dir(Utf8Path::new(
            "/srv/boma/tests/integration/.run/boma-it-askari-1",
        ));
        assert_ne!(a, b);
        assert_eq!(
            a,
            control_dir(Utf8Path::new(
                "/home/ci/builds/a/very/long/checkout/path/tests/integration/.run/boma-it-askari-1"
            ))
        );
        assert!(a.as_str().len() <= boma_ssh::MAX_CONTROL_DIR, "{a}");
        assert!(a.as_str().starts_with("/tmp/boma-ssh-"));
    }

    /// Two members behind one loopback address: each reached by its name, its fleet address and
    /// its VM's name, on its own port; the loopback address and a real host's address by none.
    #[test]
    fn a_fleet_table_maps_each_members_names_to_its_own_forward() {
        let target = |port| SshTarget {
            host: "127.0.0.1".into(),
            port,
            user: "ansible".into(),
            key: "/k/id_ed25519".into(),
        };
        let (a_target, b_target) = (target(40022), target(40023));
        let (a_vm, b_vm) = (
            VmName::parse("boma-it-askari-1a2b3c4d").unwrap(),
            VmName::parse("boma-it-ubongo-1a2b3c4d").unwrap(),
        );
        let (askari, ubongo) = (
            MemberName::checked("askari").unwrap(),
            MemberName::checked("ubongo").unwrap(),
        );
        let members = [
            FleetMember {
                vm: &a_vm,
                name: &askari,
                address: Ipv4Addr::new(10, 231, 0, 10),
                target: &a_target,
            },
            FleetMember {
                vm: &b_vm,
                name: &ubongo,
                address: Ipv4Addr::new(10, 231, 0, 11),
                target: &b_target,
            },
        ];
        let table = fleet_table(
            &members,
            Utf8Path::new("/r/boma-it-web-1a2b3c4d"),
            Utf8Path::new("/usr/bin/ssh"),
            Utf8Path::new("/r/boma-it-web-1a2b3c4d/harness.log"),
        )
        .unwrap();
        for (destination, port) in [
            ("askari", 40022),
            ("10.231.0.10", 40022),
            ("boma-it-askari-1a2b3c4d", 40022),
            ("ubongo", 40023),
            ("10.231.0.11", 40023),
            ("boma-it-ubongo-1a2b3c4d", 40023),
        ] {
            let endpoint = table.endpoint_for(destination).unwrap();
            assert_eq!(endpoint.port(), port, "{destination}");
            assert_eq!(endpoint.address().to_string(), "127.0.0.1");
        }
        for refused in ["127.0.0.1", "77.42.120.136", "localhost", "10.231.0.12"] {
            assert!(table.endpoint_for(refused).is_none(), "{refused}");
        }
    }

    #[test]
    fn the_shims_quote_their_paths_for_sh() {
        let shim = ssh_shim(
            Utf8Path::new("/home/o'neil/boma/target/debug/xtask"),
            Utf8Path::new("/run/x/connect/table.json"),
        );
        assert_eq!(
            shim.lines().last(),
            Some(
                r#"exec '/home/o'\''neil/boma/target/debug/xtask' connect-ssh '/run/x/connect/table.json' -- "$@""#
            )
        );
        let scp = refusing_shim("scp", Utf8Path::new("/run/x/harness.log"));
        assert!(scp.contains(">> '/run/x/harness.log'"), "{scp}");
        assert!(scp.ends_with("exit 255\n"), "{scp}");
    }

    #[test]
    fn a_control_directory_is_made_private_reused_when_ours_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8PathBuf::from_path_buf(tmp.path().join("cm")).unwrap();
        open_control_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // A killed run's leftover: ours, so emptied and reused.
        std::fs::write(dir.join("stale"), "").unwrap();
        open_control_dir(&dir).unwrap();
        assert_eq!(dir.read_dir_utf8().unwrap().count(), 0);
        // Someone else's (here: readable by others): refused.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = open_control_dir(&dir).unwrap_err();
        assert!(
            err.to_string()
                .contains("not this user's private directory"),
            "{err}"
        );
        // A file where the master's socket would be is told to exit (and cannot), then goes.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(dir.join("0123"), "").unwrap();
        close_control_dir(&Shell::new().unwrap(), &dir);
        assert!(!dir.exists());
    }

    #[test]
    fn the_note_names_every_plugin_file_once() {
        assert_eq!(connection_plugin_note(&[]), None);
        let note = connection_plugin_note(&[
            "playbooks/connection_plugins/ssh.py".into(),
            "roles/base/connection_plugins/local.py".into(),
        ])
        .unwrap();
        assert!(
            note.starts_with(
                "note: playbooks/connection_plugins/ssh.py, roles/base/connection_plugins/local.py: "
            ),
            "{note}"
        );
    }
}
