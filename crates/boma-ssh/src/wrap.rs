//! Ansible's ssh command line, rebuilt: [`wrap`] reads it with ssh(1)'s own grammar, keeps the
//! few flags that change nothing about where or how ssh connects, and puts the run's pinned
//! options and the VM's alias in place of everything else.

use crate::endpoint::{ControlCommand, pinned_options};
use crate::table::Table;

/// ssh's options that take no value (OpenSSH 9.2's `ssh -h`). `1`, `2` and `P` are left out on
/// purpose: ssh accepts them but their meaning changed between versions (protocol choice, a
/// tag), and Ansible never passes them, so they are refused as unknown.
pub const FLAGS: &str = "46AaCfGgKkMNnqsTtVvXxYy";
/// ssh's options that take a value, attached (`-oX=Y`, `-p22`) or as the next argument.
pub const VALUE_OPTIONS: &str = "BbcDEeFIiJLlmOopQRSWw";

/// Why an ssh command line was not passed on. Ansible shows ssh's stderr: each reads as one
/// line there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("refusing ssh to {destination}: not a vm of this run ({})", .vms.join(", "))]
    NotAVm {
        destination: String,
        vms: Vec<String>,
    },
    #[error("refusing ssh: no destination in `{}`", .argv.join(" "))]
    NoDestination { argv: Vec<String> },
    #[error("refusing ssh: unknown option -{option}")]
    UnknownOption { option: char },
    #[error("refusing ssh: option -{option} needs a value")]
    MissingValue { option: char },
    #[error(
        "refusing ssh -O {command}: only check, stop and exit, which act on the run's own connection"
    )]
    ControlCommand { command: String },
}

/// What is kept of a command line: flags that change neither where nor how ssh connects.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Kept {
    /// `-t` once (a tty when there is one) or twice (always).
    tty: u8,
    no_tty: bool,
    quiet: bool,
    verbose: u8,
    control: Option<ControlCommand>,
}

impl Kept {
    fn flag(&mut self, flag: char) {
        match flag {
            't' => self.tty = self.tty.saturating_add(1),
            'T' => self.no_tty = true,
            'q' => self.quiet = true,
            'v' => self.verbose = self.verbose.saturating_add(1),
            // Every other flag is dropped: compression, forwarding, backgrounding, no command,
            // address family… none is the run's to choose.
            _ => {}
        }
    }

    fn argv(&self) -> Vec<String> {
        let mut argv = Vec::new();
        if self.quiet {
            argv.push("-q".to_owned());
        }
        if self.verbose > 0 {
            argv.push(format!("-{}", "v".repeat(self.verbose.min(3).into())));
        }
        if self.tty > 0 {
            argv.push(format!("-{}", "t".repeat(self.tty.min(2).into())));
        }
        if self.no_tty {
            argv.push("-T".to_owned());
        }
        if let Some(command) = self.control {
            argv.extend(["-O".to_owned(), command.as_str().to_owned()]);
        }
        argv
    }
}

/// A command line as ssh reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed {
    kept: Kept,
    destination: String,
    command: Vec<String>,
}

/// Read `argv` as ssh(1) does: options, the destination, more options (ssh starts reading
/// options again after the destination), then the remote command from the first argument that
/// is not an option. `--` ends the options wherever it stands.
fn parse(argv: &[String]) -> Result<Parsed, Refusal> {
    let mut kept = Kept::default();
    let mut destination: Option<String> = None;
    let mut at = 0;
    while at < argv.len() {
        let arg = &argv[at];
        at += 1;
        if arg == "--" {
            if destination.is_none() {
                destination = argv.get(at).cloned();
                at += 1;
            }
            break;
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) else {
            // Not an option: the destination, or, once there is one, the command's start.
            if destination.is_none() {
                destination = Some(arg.clone());
                continue;
            }
            at -= 1;
            break;
        };
        for (offset, option) in cluster.char_indices() {
            if FLAGS.contains(option) {
                kept.flag(option);
                continue;
            }
            if !VALUE_OPTIONS.contains(option) {
                return Err(Refusal::UnknownOption { option });
            }
            let attached = &cluster[offset + option.len_utf8()..];
            let value = if attached.is_empty() {
                let value = argv
                    .get(at)
                    .ok_or(Refusal::MissingValue { option })?
                    .clone();
                at += 1;
                value
            } else {
                attached.to_owned()
            };
            if option == 'O' {
                kept.control = Some(
                    ControlCommand::parse(&value)
                        .ok_or(Refusal::ControlCommand { command: value })?,
                );
            }
            // Every other value (`-o`, `-F`, `-i`, `-J`, `-L`, `-S`, `-p`, `-l`…) is dropped.
            break;
        }
    }
    let destination = destination.ok_or_else(|| Refusal::NoDestination {
        argv: argv.to_vec(),
    })?;
    Ok(Parsed {
        kept,
        destination,
        command: argv[at.min(argv.len())..].to_vec(),
    })
}

/// The host of a destination as ssh reads it: `[user@]host` (the user ends at the last `@`) or
/// `ssh://[user@]host[:port]` (`[…]` around an IPv6 address).
fn host_of(destination: &str) -> &str {
    match destination.strip_prefix("ssh://") {
        Some(uri) => {
            let host = uri.rsplit_once('@').map_or(uri, |(_, host)| host);
            match host.strip_prefix('[') {
                Some(bracketed) => bracketed.split_once(']').map_or(bracketed, |(h, _)| h),
                None => host.split_once(':').map_or(host, |(h, _)| h),
            }
        }
        None => destination
            .rsplit_once('@')
            .map_or(destination, |(_, host)| host),
    }
}

/// Ansible's ssh arguments (the program name excluded), rebuilt for the run: the pinned
/// options of the VM the destination names, the kept flags, then `--`, the VM's alias and the
/// remote command unchanged. A destination that is none of the table's VMs, an option ssh
/// does not know, and a control command other than check, stop or exit are refused.
pub fn wrap(table: &Table, argv: &[String]) -> Result<Vec<String>, Refusal> {
    let parsed = parse(argv)?;
    let endpoint = table
        .endpoint_for(host_of(&parsed.destination))
        .ok_or_else(|| Refusal::NotAVm {
            destination: parsed.destination.clone(),
            vms: table.aliases().into_iter().map(str::to_owned).collect(),
        })?;
    let mut out = pinned_options(endpoint);
    out.extend(parsed.kept.argv());
    out.push("--".to_owned());
    out.push(endpoint.alias().to_owned());
    out.extend(parsed.command);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn ansibles_command_line_is_read_as_ssh_reads_it() {
        // ansible-core 2.18's exec_command, as its ssh plugin builds it (default ssh_args).
        let argv = args(&[
            "-C",
            "-o",
            "ControlMaster=auto",
            "-o",
            "ControlPersist=60s",
            "-o",
            "Port=40022",
            "-o",
            "IdentityFile=\"/k/id\"",
            "-o",
            "KbdInteractiveAuthentication=no",
            "-o",
            "User=\"ansible\"",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ControlPath=\"/root/.ansible/cp/0c3e5d\"",
            "-tt",
            "127.0.0.1",
            "/bin/sh -c 'echo ~ansible && sleep 0'",
        ]);
        let parsed = parse(&argv).unwrap();
        assert_eq!(parsed.destination, "127.0.0.1");
        assert_eq!(parsed.command, ["/bin/sh -c 'echo ~ansible && sleep 0'"]);
        assert_eq!(parsed.kept.argv(), ["-tt"]);
    }

    #[test]
    fn options_after_the_destination_are_options_until_the_command_starts() {
        let parsed = parse(&args(&[
            "-vvv", "host", "-p", "22", "-qT", "ls", "-l", "--", "x",
        ]))
        .unwrap();
        assert_eq!(parsed.destination, "host");
        assert_eq!(parsed.command, ["ls", "-l", "--", "x"]);
        assert_eq!(parsed.kept.argv(), ["-q", "-vvv", "-T"]);

        let parsed = parse(&args(&["-oPort=2", "--", "-host", "-p", "1"])).unwrap();
        assert_eq!(parsed.destination, "-host");
        assert_eq!(parsed.command, ["-p", "1"]);

        let parsed = parse(&args(&["host", "--", "-p", "1"])).unwrap();
        assert_eq!(parsed.command, ["-p", "1"]);

        let parsed = parse(&args(&["-O", "check", "127.0.0.1"])).unwrap();
        assert_eq!(parsed.kept.argv(), ["-O", "check"]);
        assert!(parsed.command.is_empty());
    }

    #[test]
    fn what_ssh_would_not_run_is_refused() {
        assert_eq!(
            parse(&args(&["-Z", "host"])),
            Err(Refusal::UnknownOption { option: 'Z' })
        );
        assert_eq!(
            parse(&args(&["-P", "tag", "host"])),
            Err(Refusal::UnknownOption { option: 'P' })
        );
        assert_eq!(
            parse(&args(&["host", "-o"])),
            Err(Refusal::MissingValue { option: 'o' })
        );
        assert_eq!(
            parse(&args(&["-O", "forward", "host"])),
            Err(Refusal::ControlCommand {
                command: "forward".into()
            })
        );
        assert!(matches!(
            parse(&args(&["-o", "HostName=x"])),
            Err(Refusal::NoDestination { .. })
        ));
    }

    #[test]
    fn a_destinations_host_is_found_in_every_form() {
        for (destination, host) in [
            ("127.0.0.1", "127.0.0.1"),
            ("root@127.0.0.1", "127.0.0.1"),
            ("a@b@boma-it-x", "boma-it-x"),
            ("ssh://root@127.0.0.1:22", "127.0.0.1"),
            ("ssh://boma-it-x", "boma-it-x"),
            ("ssh://u@[::1]:22", "::1"),
            ("host:22", "host:22"),
        ] {
            assert_eq!(host_of(destination), host, "{destination}");
        }
    }
}
