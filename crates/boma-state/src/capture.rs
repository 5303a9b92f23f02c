//! The capture script the harness runs on the guest, and the split of its output into sections.

use std::collections::BTreeMap;

/// A POSIX `sh` script that prints the guest's observable state in one SSH round trip.
///
/// Run it as root with the script on stdin: `ssh … 'sudo sh -s' < script`. Each section is
/// `### <name>`, the command's stdout, then `### stderr` and the command's stderr if it wrote
/// any, then `### rc=<exit status>`. `tests/fixtures/capture.sh`, which took the committed
/// fixtures from real guests, frames its sections the same way and under the same names, with
/// stderr folded into stdout (and a few extra sections the parser skips), so the parser reads
/// both. A missing command (`### rc=127`) or a failing one spoils only its own section.
///
/// It is cheap under software emulation: fourteen short process starts on a settled host (one
/// per section, plus `timeout` twice, one `systemctl is-active` and the settle check's two
/// `systemctl` calls), JSON where a command has it. (The port range is read with `cat`: dash's
/// `read` builtin reads byte by byte, and a sysctl file answers only a read at offset 0.)
/// `ip route show table all` lists IPv6 routes too on Debian 13, so there is no separate
/// `ip -6` call. Commands read `/dev/null`: the script itself arrives on stdin, and a command
/// reading stdin would swallow the rest of it. Every command's stdout is printed with exactly
/// one trailing newline, so a `### ` marker always starts a line.
///
/// The first section waits (at most 120 s) for the boot to finish: right after a reboot,
/// units still starting would read as lost. The second, `settle`, then waits (at most
/// [`SETTLE_WITHIN_SECONDS`], polling each second) until systemd has no job queued and no unit
/// in its restart loop (`auto-restart`, `auto-restart-queued`): a handler's restart, a slow
/// start or a unit that failed once and is retried gets its chance to finish. What is still
/// restarting after that keeps exiting, and the diff calls it `unit_restarting` (Docker's
/// `restarting` containers, `container_restarting`); the section says `settled after N s`, or
/// `not settled after N s` with the jobs and looping units, exit status 1. The diff reads the
/// units' states themselves from `units-json`.
///
/// `docker ps` runs only when `docker.service` is active, because with socket activation the
/// query would start the daemon and so hide that it did not come up by itself.
pub const CAPTURE_SCRIPT: &str = r#"# boma reboot-diff capture (boma-state): run as root with `sudo sh -s`, script on stdin.
exec 3>&1
sec() {
	name=$1
	shift
	printf '### %s\n' "$name"
	if command -v "$1" >/dev/null 2>&1; then
		err=$( { out=$("$@" 2>&4 </dev/null); rc=$?; printf '%s\n' "$out" >&3; exit "$rc"; } 4>&1 )
		rc=$?
	else
		err="$1: not installed"
		rc=127
	fi
	if [ -n "$err" ]; then
		printf '### stderr\n%s\n' "$err"
	fi
	printf '### rc=%s\n' "$rc"
}
docker_ps() {
	if ! command -v docker >/dev/null 2>&1; then
		echo 'docker: not installed' >&2
		return 127
	fi
	if ! systemctl -q is-active docker.service; then
		echo 'docker.service is not active'
		return 3
	fi
	timeout 60 docker ps -a --no-trunc --format '{{json .}}'
}
settle_within=30
settle() {
	waited=0
	while :; do
		jobs=$(systemctl list-jobs --no-legend --no-pager)
		looping=$(systemctl list-units --all --no-legend --no-pager --plain --state=auto-restart,auto-restart-queued)
		if [ -z "$jobs" ] && [ -z "$looping" ]; then
			echo "settled after $waited s"
			return 0
		fi
		if [ "$waited" -ge "$settle_within" ]; then
			echo "not settled after $waited s"
			if [ -n "$jobs" ]; then printf '%s\n' "$jobs"; fi
			if [ -n "$looping" ]; then printf '%s\n' "$looping"; fi
			return 1
		fi
		sleep 1
		waited=$((waited + 1))
	done
}
sec is-system-running timeout 120 systemctl is-system-running --wait
sec settle settle
sec units-json systemctl list-units --all --output=json --no-pager
sec unit-files-json systemctl list-unit-files --output=json --no-pager
sec ss-tulpn ss -H -tulpn
sec nft-text nft list ruleset
sec ip-route-json ip -j route show table all
sec findmnt-json findmnt -J -o TARGET,SOURCE,FSTYPE
sec docker-ps docker_ps
sec port-range cat /proc/sys/net/ipv4/ip_local_port_range
"#;

/// How long the capture script's `settle` section waits at most for systemd's jobs and restart
/// loops to end: `settle_within` in [`CAPTURE_SCRIPT`] (a test checks they agree).
pub const SETTLE_WITHIN_SECONDS: u32 = 30;

/// What `docker_ps` in [`CAPTURE_SCRIPT`] prints when the daemon is installed but not running.
pub(crate) const DOCKER_INACTIVE: &str = "docker.service is not active";

/// One `### <name>` … `### rc=N` block of a capture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RawSection {
    pub stdout: String,
    /// What the command wrote to stderr when the script kept it apart (`### stderr`).
    pub stderr: String,
    /// `None` when the capture ended inside the section.
    pub rc: Option<i32>,
}

/// Why a capture could not be read at all. A single section that is missing or broken is not
/// an error: it is recorded as unavailable in the state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error(
        "the capture has no `### <section>` header, so the capture script did not run; it starts with {start:?}"
    )]
    NotACapture { start: String },
    #[error(
        "section `{name}` appears twice in the capture: pass the output of one run of the capture script"
    )]
    DuplicateSection { name: String },
}

/// Where [`split_sections`] stands: outside any section, or inside one with the stream its
/// lines go to. A section's lines cannot be read without a section to hold them.
enum Reading {
    /// Before the first header (a login banner, a sudo warning), or after a section's
    /// `### rc=N` and before the next header: these lines belong to no section.
    Outside,
    Inside {
        name: String,
        raw: RawSection,
        stream: Stream,
    },
}

/// Which of a section's outputs its next line belongs to.
#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    /// After `### stderr`.
    Stderr,
}

impl Reading {
    fn start(name: &str) -> Reading {
        Reading::Inside {
            name: name.to_owned(),
            raw: RawSection::default(),
            stream: Stream::Stdout,
        }
    }
}

/// Splits a capture into its sections by name.
pub(crate) fn split_sections(text: &str) -> Result<BTreeMap<String, RawSection>, ParseError> {
    let mut sections = BTreeMap::new();
    let mut reading = Reading::Outside;
    for line in text.lines() {
        let marker = line.strip_prefix("### ");
        let header = marker.filter(|name| is_section_name(name));
        reading = match reading {
            Reading::Outside => header.map_or(Reading::Outside, Reading::start),
            Reading::Inside {
                name,
                mut raw,
                stream,
            } => {
                if let Some(rc) = marker.and_then(exit_status) {
                    raw.rc = Some(rc);
                    insert(&mut sections, name, raw)?;
                    Reading::Outside
                } else if marker == Some("stderr") {
                    Reading::Inside {
                        name,
                        raw,
                        stream: Stream::Stderr,
                    }
                } else if let Some(next) = header {
                    // A header without the previous section's exit status: that section was
                    // cut short, and its `rc` stays `None`.
                    insert(&mut sections, name, raw)?;
                    Reading::start(next)
                } else {
                    let sink = match stream {
                        Stream::Stdout => &mut raw.stdout,
                        Stream::Stderr => &mut raw.stderr,
                    };
                    sink.push_str(line);
                    sink.push('\n');
                    Reading::Inside { name, raw, stream }
                }
            }
        };
    }
    if let Reading::Inside { name, raw, .. } = reading {
        insert(&mut sections, name, raw)?;
    }
    if sections.is_empty() {
        return Err(ParseError::NotACapture {
            start: text.chars().take(200).collect(),
        });
    }
    Ok(sections)
}

/// The status in a `### rc=<status>` marker (given without `### `).
fn exit_status(marker: &str) -> Option<i32> {
    marker.strip_prefix("rc=")?.parse().ok()
}

fn insert(
    sections: &mut BTreeMap<String, RawSection>,
    name: String,
    section: RawSection,
) -> Result<(), ParseError> {
    if sections.contains_key(&name) {
        return Err(ParseError::DuplicateSection { name });
    }
    sections.insert(name, section);
    Ok(())
}

/// Section names are lowercase words joined by `-`, like `nft-text`; anything else after `### `
/// is text of the section being read.
fn is_section_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name != "stderr"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_sections_with_and_without_separate_stderr() {
        let text = "banner\n### a\nout\n### rc=0\n### b\nsome\n### stderr\nwarn\n### rc=2\n";
        let sections = split_sections(text).unwrap();
        assert_eq!(sections["a"].stdout, "out\n");
        assert_eq!(sections["a"].rc, Some(0));
        assert_eq!(sections["b"].stdout, "some\n");
        assert_eq!(sections["b"].stderr, "warn\n");
        assert_eq!(sections["b"].rc, Some(2));
    }

    #[test]
    fn a_truncated_section_has_no_exit_status() {
        let sections = split_sections("### a\nout\n### rc=0\n### b\npartial").unwrap();
        assert_eq!(sections["b"].rc, None);
        assert_eq!(sections["b"].stdout, "partial\n");
    }

    #[test]
    fn a_header_without_exit_status_starts_the_next_section() {
        let sections = split_sections("### a\nout\n### b\nmore\n### rc=0\n").unwrap();
        assert_eq!(sections["a"].rc, None);
        assert_eq!(sections["b"].rc, Some(0));
    }

    #[test]
    fn text_without_headers_is_not_a_capture() {
        let err = split_sections("sudo: a password is required\n").unwrap_err();
        assert!(matches!(err, ParseError::NotACapture { start } if start.starts_with("sudo")));
    }

    #[test]
    fn a_repeated_section_is_refused() {
        let err = split_sections("### a\n### rc=0\n### a\n### rc=0\n").unwrap_err();
        assert_eq!(
            err,
            ParseError::DuplicateSection {
                name: "a".to_owned()
            }
        );
    }
}
