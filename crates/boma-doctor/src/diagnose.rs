//! The judgement as the operator reads it: facts in, one line per subject out, each with its
//! status and, when something is wrong, the fix. Every rule about the control node (memory,
//! disk, required programs, libvirt, KVM) is `boma_host::judge`'s, which `it`'s preflight and
//! the reservation apply too; this module words them. Pure: no filesystem, process, clock or
//! environment.

use boma_host::Accel;
use boma_host::facts::{KvmDevice, KvmFacts, Space, ToolFact, ToolState, Version};
use boma_host::gather::LIBVIRT_URI;
use boma_host::judge::{
    self, Disk, GOLDEN_IMAGE_MIB, KvmPlan, Libvirt, MARGIN_MIB, MemoryNeed, RUN_DISK_MIB,
};
use boma_host::kvm::{CachedProbe, ProbeCache};
use boma_host::tools::{Needs, Purpose};
use boma_image::Origin;

use crate::facts::{DiskFacts, Facts, ImageCheck, ImageFact, VenvAnsible};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    /// `it` runs, but slower, or without an optional part, or something is worth knowing.
    Warn,
    /// `it` cannot run until this is fixed.
    Problem,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Problem => "problem",
        }
    }
}

/// One subject's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// What the line is about: a program, `kvm`, `memory`, …
    pub subject: String,
    pub status: Status,
    pub text: String,
    /// What to do about it, when there is something to do.
    pub fix: Option<String>,
}

impl Line {
    fn new(subject: impl Into<String>, status: Status, text: impl Into<String>) -> Line {
        Line {
            subject: subject.into(),
            status,
            text: text.into(),
            fix: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Line {
        self.fix = Some(fix.into());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub lines: Vec<Line>,
    /// No line is a [`Status::Problem`].
    pub can_run: bool,
    /// The Debian packages of every missing program, in the order first met: what
    /// `cargo xtask substrate` would install.
    pub missing_packages: Vec<String>,
}

impl Diagnosis {
    pub fn problems(&self) -> impl Iterator<Item = &Line> {
        self.lines.iter().filter(|l| l.status == Status::Problem)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Line> {
        self.lines.iter().filter(|l| l.status == Status::Warn)
    }
}

/// Everything: what `cargo xtask doctor` prints.
pub fn diagnose(facts: &Facts) -> Diagnosis {
    diagnose_for(facts, Needs::All)
}

/// Only what `needs` depends on: what `it`'s preflight prints when it refuses to start.
pub fn diagnose_for(facts: &Facts, needs: Needs) -> Diagnosis {
    let image_cached = facts
        .image_cache
        .images
        .iter()
        .any(|i| i.check == ImageCheck::Verified);
    let sudo = if facts.is_root { "" } else { "sudo " };
    let mut lines = Vec::new();
    let mut missing_packages: Vec<String> = Vec::new();
    let required = judge::missing_required(needs, &facts.tools);
    for fact in facts.tools.iter().filter(|f| needs.covers(f.tool.purpose)) {
        let package = fact.tool.package.name(facts.debian_codename.as_deref());
        if !fact.state.is_present() && !missing_packages.contains(&package) {
            missing_packages.push(package.clone());
        }
        let stops_it =
            required.contains(&fact) || (fact.tool.purpose == Purpose::ImageBuild && !image_cached);
        lines.push(tool_line(fact, &package, stops_it, image_cached, sudo));
    }
    if needs.ansible() {
        lines.push(venv_line(facts));
    }
    if needs.vm() {
        lines.extend(kvm_lines(&facts.kvm));
        lines.extend(memory_lines(facts));
        lines.extend(disk_lines(facts, image_cached));
        lines.push(libvirt_line(facts));
        lines.extend(image_cache_lines(facts, image_cached));
    }
    let can_run = lines.iter().all(|l| l.status != Status::Problem);
    Diagnosis {
        lines,
        can_run,
        missing_packages,
    }
}

/// A program's line; `stops_it`: missing, it keeps `it` from running (a program its step
/// requires, or an image-build program while no image is cached).
fn tool_line(
    fact: &ToolFact,
    package: &str,
    stops_it: bool,
    image_cached: bool,
    sudo: &str,
) -> Line {
    let program = fact.tool.program;
    let purpose = fact.tool.purpose;
    let version = match &fact.state {
        ToolState::Present { version, .. } => version,
        ToolState::Missing => {
            let status = if stops_it {
                Status::Problem
            } else {
                Status::Warn
            };
            let why = if purpose == Purpose::ImageBuild && image_cached {
                "only needed to rebuild the golden image: a verified one is cached"
            } else {
                purpose.why()
            };
            return Line::new(program, status, format!("not installed: {why}"))
                .fix(format!("{sudo}apt-get install {package}"));
        }
    };
    let text = match version {
        Version::Reported(line) => shorten(line, BANNER_WIDTH),
        Version::NoFlag => "present (it has no version flag)".to_owned(),
        Version::NotProbed => "present".to_owned(),
        Version::Unreadable => "present (its version could not be read)".to_owned(),
    };
    Line::new(program, Status::Ok, text)
}

/// How much of a version banner a line shows (curl's runs to 300 characters of libraries).
const BANNER_WIDTH: usize = 80;

/// `text` cut at a word boundary to at most `width` characters, marked with `…` when cut.
fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let cut: String = text.chars().take(width).collect();
    let head = cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head);
    format!("{head} …")
}

fn venv_line(facts: &Facts) -> Line {
    const SUBJECT: &str = "ansible-playbook";
    const REBUILD: &str = "rm -rf .venv && make venv";
    let pinned = facts.venv.pinned_core.as_deref();
    match (&facts.venv.ansible, pinned) {
        (VenvAnsible::Missing, _) => Line::new(
            SUBJECT,
            Status::Problem,
            ".venv/bin/ansible-playbook is missing (the pinned Ansible applies the playbooks)",
        )
        .fix("make venv"),
        (VenvAnsible::Broken, _) => Line::new(
            SUBJECT,
            Status::Problem,
            ".venv/bin/ansible-playbook does not report its version: the venv is broken",
        )
        .fix(REBUILD),
        (VenvAnsible::Core(version), Some(pin)) if version == pin => Line::new(
            SUBJECT,
            Status::Ok,
            format!("ansible-core {version} in .venv, as requirements.txt pins"),
        ),
        (VenvAnsible::Core(version), Some(pin)) => Line::new(
            SUBJECT,
            Status::Problem,
            format!("ansible-core {version} in .venv, but requirements.txt pins {pin}"),
        )
        .fix(REBUILD),
        (VenvAnsible::Core(version), None) => Line::new(
            SUBJECT,
            Status::Warn,
            format!(
                "ansible-core {version} in .venv; requirements.txt pins no ansible-core version to compare with"
            ),
        ),
    }
}

/// The KVM verdict with its reason, then, under TCG, what that costs. It follows what `it`
/// does: no usable `/dev/kvm` means TCG; a usable one means the cached probe verdict, or a
/// probe on the next run. The CPU flag only explains.
fn kvm_lines(kvm: &KvmFacts) -> Vec<Line> {
    const SUBJECT: &str = "kvm";
    const NO_FLAG: &str = "the CPU shows no vmx or svm flag in /proc/cpuinfo";
    const FIX_FLAG: &str = "enable VT-x/AMD-V in the firmware, or nested virtualisation on the hypervisor running this machine";
    let no_flag = kvm.cpu_flag.is_none();
    let tcg =
        |reason: String| Line::new(SUBJECT, Status::Warn, format!("no: TCG, because {reason}"));
    let plan = judge::kvm_plan(&kvm.device, kvm.probe.current());
    let verdict = match (plan, &kvm.device, &kvm.probe) {
        (KvmPlan::Probe, _, _) if no_flag => Line::new(
            SUBJECT,
            Status::Warn,
            format!(
                "probably not: {NO_FLAG}, though /dev/kvm opens; `it` boots a probe guest once (up to ~40 s) and caches the verdict in {}",
                kvm.probe_file
            ),
        )
        .fix(FIX_FLAG),
        (KvmPlan::Probe, _, _) => not_probed(kvm),
        (KvmPlan::Use(_), KvmDevice::Missing, _) if no_flag => {
            tcg(format!("/dev/kvm does not exist and {NO_FLAG}")).fix(FIX_FLAG)
        }
        (KvmPlan::Use(_), KvmDevice::Missing, _) => tcg("/dev/kvm does not exist".into())
            .fix("load the module: modprobe kvm_intel (or kvm_amd)"),
        (KvmPlan::Use(_), KvmDevice::Inaccessible { owner, group, mode }, _) => tcg(format!(
            "/dev/kvm is {owner}:{group} {mode:04o} and this user cannot open it"
        ))
        .fix(format!(
            "sudo usermod -aG {group} $USER, then log in again (the integration_test role gives /dev/kvm to the kvm group)"
        )),
        (KvmPlan::Use(_), KvmDevice::Accessible, ProbeCache::Cached(probe)) => {
            probe_verdict(kvm, probe, no_flag)
        }
        // The plan uses a usable device's verdict only when one holds.
        (KvmPlan::Use(_), KvmDevice::Accessible, _) => not_probed(kvm),
    };
    let mut lines = vec![verdict];
    let kvm_proven = plan == KvmPlan::Use(Accel::Kvm);
    let under_tcg = plan == KvmPlan::Use(Accel::Tcg) || (no_flag && !kvm_proven);
    if under_tcg {
        lines.push(Line::new(
            "tcg",
            Status::Warn,
            "software emulation: boots, applies and reboots run 5-10x slower than with KVM (a first cycle of a Docker host takes a quarter of an hour on 2 cores)",
        ));
    }
    lines
}

/// The verdict a probe made on this boot, with this QEMU, for this image.
fn probe_verdict(kvm: &KvmFacts, probe: &CachedProbe, no_flag: bool) -> Line {
    let file = &kvm.probe_file;
    match probe.accel {
        Accel::Kvm => Line::new(
            "kvm",
            Status::Ok,
            format!("yes: a probe guest ran under KVM (verdict cached for this boot in {file})"),
        ),
        Accel::Tcg => {
            let reason = match (&probe.reason, no_flag) {
                (Some(reason), _) => reason.clone(),
                (None, true) => "a probe guest did not run under KVM; and the CPU shows no vmx or svm flag in /proc/cpuinfo".to_owned(),
                (None, false) => "a probe guest did not run under KVM".to_owned(),
            };
            Line::new(
                "kvm",
                Status::Warn,
                format!(
                    "no: TCG, because the cached probe verdict for this boot says: {reason} ({file}; /dev/kvm opens, yet guests do not run)"
                ),
            )
        }
    }
}

/// `/dev/kvm` is usable and no verdict holds for this boot: only `it`'s probe can tell.
fn not_probed(kvm: &KvmFacts) -> Line {
    const SUBJECT: &str = "kvm";
    let file = &kvm.probe_file;
    let will_probe = "`it` boots a probe guest once (up to ~40 s) and caches the verdict";
    match &kvm.probe {
        ProbeCache::Cached(probe) => Line::new(
            SUBJECT,
            Status::Ok,
            format!(
                "the cached verdict in {file} was made for {}: {will_probe} again",
                stale_because(probe)
            ),
        ),
        ProbeCache::Unreadable => Line::new(
            SUBJECT,
            Status::Ok,
            format!("{file} holds no verdict: {will_probe} again"),
        ),
        ProbeCache::Absent => Line::new(
            SUBJECT,
            Status::Ok,
            format!(
                "not probed yet (/dev/kvm opens, which proves nothing): {will_probe} in {file}"
            ),
        ),
    }
}

fn stale_because(probe: &CachedProbe) -> &'static str {
    if !probe.same_boot {
        "an earlier boot of this machine"
    } else if !probe.same_qemu {
        "another QEMU version"
    } else {
        "another golden image"
    }
}

fn memory_lines(facts: &Facts) -> Vec<Line> {
    const SUBJECT: &str = "memory";
    let mut lines: Vec<Line> = facts
        .memory
        .profiles
        .iter()
        .filter_map(|p| {
            let error = p.mem_mib.as_ref().err()?;
            Some(
                Line::new(
                    format!("profiles/{}.json", p.host),
                    Status::Warn,
                    format!("cannot read its mem_mib: {error}"),
                )
                .fix("fix the profile (`cargo xtask it` refuses it too)"),
            )
        })
        .collect();
    let largest = facts
        .memory
        .profiles
        .iter()
        .filter_map(|p| Some((p.host.as_str(), *p.mem_mib.as_ref().ok()?)))
        .max_by_key(|(host, mib)| (*mib, std::cmp::Reverse(*host)));
    let line = match (facts.memory.available_mib, largest) {
        (_, None) => Line::new(
            SUBJECT,
            Status::Warn,
            "no readable profiles/*.json: nothing to compare the available memory with",
        ),
        (None, _) => Line::new(
            SUBJECT,
            Status::Warn,
            "MemAvailable cannot be read from /proc/meminfo: `it` will refuse to boot",
        ),
        (Some(available), Some((host, mib))) if MemoryNeed::alone(mib).fits(available) => {
            Line::new(
                SUBJECT,
                Status::Ok,
                format!(
                    "{available} MiB available: the largest profile, {host} ({mib} MiB, {} MiB with QEMU's overhead), fits with the {MARGIN_MIB} MiB margin",
                    MemoryNeed::alone(mib).charge_mib
                ),
            )
        }
        (Some(available), Some((host, mib))) => Line::new(
            SUBJECT,
            Status::Problem,
            format!(
                "{available} MiB available (MemAvailable), and the largest profile, {host}, needs {} MiB: {mib} MiB, QEMU's overhead under TCG and a {MARGIN_MIB} MiB margin",
                MemoryNeed::alone(mib).total_mib()
            ),
        )
        .fix(format!(
            "stop other VMs (`cargo xtask prune`) or other memory users, or lower mem_mib in profiles/{host}.json"
        )),
    };
    lines.push(line);
    lines
}

fn disk_lines(facts: &Facts, image_cached: bool) -> Vec<Line> {
    let DiskFacts { runs, cache } = &facts.disk;
    let image_need = if image_cached { 0 } else { GOLDEN_IMAGE_MIB };
    let image_what = format!("the golden image {image_need} MiB");
    let run_what = format!("a run {RUN_DISK_MIB} MiB");
    let shared = runs.device.is_some() && runs.device == cache.device;
    if shared {
        let need = RUN_DISK_MIB + image_need;
        let needs = if image_cached {
            run_what
        } else {
            format!("{run_what} + {image_what}")
        };
        let place = format!("the filesystem of {} and {}", runs.dir, cache.dir);
        vec![space_line("disk", runs, &place, need, &needs)]
    } else {
        let mut lines = vec![space_line(
            "disk (runs)",
            runs,
            &format!("the filesystem of {}", runs.dir),
            RUN_DISK_MIB,
            &run_what,
        )];
        let cache_place = format!("the filesystem of {}", cache.dir);
        let cache_line = if image_cached {
            Line::new(
                "disk (image cache)",
                Status::Ok,
                format!(
                    "a verified golden image is cached: nothing more to write on {cache_place}"
                ),
            )
        } else {
            space_line(
                "disk (image cache)",
                cache,
                &cache_place,
                image_need,
                &image_what,
            )
        };
        lines.push(cache_line);
        lines
    }
}

fn space_line(subject: &str, space: &Space, place: &str, need: u64, needs: &str) -> Line {
    match judge::disk(space, need) {
        Disk::Unmeasured => Line::new(
            subject,
            Status::Warn,
            format!("the free space on {place} cannot be measured"),
        ),
        Disk::Enough { free_mib } => Line::new(
            subject,
            Status::Ok,
            format!("{free_mib} MiB free on {place}; needed: {needs}"),
        ),
        Disk::Short { free_mib, need_mib } => Line::new(
            subject,
            Status::Problem,
            format!("{free_mib} MiB free on {place}; needed: {needs}"),
        )
        .fix(format!(
            "free {} MiB there (`cargo xtask prune` removes leftover runs), or move the image cache with BOMA_IT_CACHE",
            need_mib - free_mib
        )),
    }
}

fn libvirt_line(facts: &Facts) -> Line {
    const SUBJECT: &str = "libvirt";
    match judge::libvirt(&facts.tools, &facts.libvirt) {
        Libvirt::NotInstalled { tool } => Line::new(
            SUBJECT,
            Status::Ok,
            format!(
                "not installed (optional; `{tool}` is missing): `--backend auto` uses QEMU, which needs no daemon"
            ),
        ),
        Libvirt::OtherNamespace { pid } => Line::new(
            SUBJECT,
            Status::Warn,
            format!(
                "libvirtd (pid {pid}) runs in another network namespace: its guests are not reachable from here, so `--backend auto` uses QEMU and `--backend libvirt` is refused"
            ),
        )
        .fix("to use libvirt, run the harness inside that namespace (`ip netns exec <ns> cargo xtask …`)"),
        Libvirt::NoDaemon => Line::new(
            SUBJECT,
            Status::Ok,
            format!("no daemon answers on {LIBVIRT_URI} (optional): `--backend auto` uses QEMU"),
        ),
        Libvirt::Usable => Line::new(
            SUBJECT,
            Status::Ok,
            format!(
                "a daemon answers on {LIBVIRT_URI} in this network namespace: `--backend auto` uses libvirt"
            ),
        ),
    }
}

fn image_cache_lines(facts: &Facts, image_cached: bool) -> Vec<Line> {
    const SUBJECT: &str = "image cache";
    let cache = &facts.image_cache;
    let dir = &cache.dir;
    if !cache.writable {
        let what = if cache.exists {
            format!("{dir} is not writable by this user")
        } else {
            format!("{dir} does not exist, and this user cannot create it")
        };
        return vec![
            Line::new(
                SUBJECT,
                Status::Problem,
                format!("{what}: `it` keeps the golden image and the KVM verdict there"),
            )
            .fix(
                "join the group that owns it (the integration_test role makes it root:libvirt 2775): sudo usermod -aG libvirt $USER and log in again; or export BOMA_IT_CACHE=<a directory of yours>",
            ),
        ];
    }
    let mut lines: Vec<Line> = cache.images.iter().map(image_line).collect();
    if !image_cached {
        let first = "no verified golden image yet: the first `it` downloads Debian's genericcloud image, or builds one from Debian packages where that site is unreachable (about 2 minutes)";
        lines.push(if facts.is_root {
            Line::new(SUBJECT, Status::Ok, format!("{dir}: {first}"))
        } else {
            Line::new(
                SUBJECT,
                Status::Warn,
                format!("{dir}: {first}; building needs root"),
            )
            .fix(
                "where the download is unreachable, build it once as root: cargo xtask image build",
            )
        });
    }
    lines
}

fn image_line(image: &ImageFact) -> Line {
    const SUBJECT: &str = "image cache";
    let name = &image.name;
    let refetch = "`it` deletes it and fetches or builds another";
    match image.check {
        ImageCheck::Verified => {
            let origin = match &image.origin {
                Some(Origin::Built) => "built from Debian packages".to_owned(),
                Some(Origin::Downloaded { url }) => format!("downloaded from {url}"),
                None => "of unknown origin".to_owned(),
            };
            let age = image
                .age_secs
                .map(|s| format!(", {} old", describe_age(s)))
                .unwrap_or_default();
            Line::new(
                SUBJECT,
                Status::Ok,
                format!("{name}: sha512 ok, {origin}{age}"),
            )
        }
        ImageCheck::Mismatch => Line::new(
            SUBJECT,
            Status::Warn,
            format!(
                "{name} does not match the cache's SHA512SUMS (truncated or corrupt): {refetch}"
            ),
        ),
        ImageCheck::NoEntry => Line::new(
            SUBJECT,
            Status::Warn,
            format!(
                "{name} has no entry in the cache's SHA512SUMS, so it cannot be trusted: {refetch}"
            ),
        ),
        ImageCheck::Unreadable => Line::new(
            SUBJECT,
            Status::Warn,
            format!("{name} cannot be read to verify it: {refetch}"),
        ),
    }
}

/// "5 minutes", "3 hours", "12 days".
pub fn describe_age(secs: u64) -> String {
    let (n, unit) = match secs {
        s if s < 2 * 3600 => ((s / 60).max(1), "minute"),
        s if s < 2 * 86_400 => (s / 3600, "hour"),
        s => (s / 86_400, "day"),
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// The diagnosis as the operator reads it: one aligned line per subject (`status  subject
/// text; fix: …`), the packages to install, then the verdict and, when `it` cannot run,
/// every problem again with its fix.
pub fn render(diagnosis: &Diagnosis) -> String {
    let width = diagnosis
        .lines
        .iter()
        .map(|l| l.subject.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for line in &diagnosis.lines {
        out.push_str(&format!(
            "{:<7}  {:<width$}  {}\n",
            line.status.label(),
            line.subject,
            with_fix(line)
        ));
    }
    if !diagnosis.missing_packages.is_empty() {
        out.push_str(&format!(
            "\nmissing packages: {}: `make test-integration` installs them before the cycle (`cargo xtask substrate`)\n",
            diagnosis.missing_packages.join(" ")
        ));
    }
    let warnings = diagnosis.warnings().count();
    if diagnosis.can_run {
        out.push_str(&format!(
            "\n`cargo xtask it` can run here ({warnings} warning{})\n",
            plural(warnings)
        ));
    } else {
        let problems: Vec<&Line> = diagnosis.problems().collect();
        out.push_str(&format!(
            "\n`cargo xtask it` cannot run here: {} problem{}\n",
            problems.len(),
            plural(problems.len())
        ));
        for line in problems {
            out.push_str(&format!("  {}: {}\n", line.subject, with_fix(line)));
        }
    }
    out
}

fn with_fix(line: &Line) -> String {
    match &line.fix {
        Some(fix) => format!("{}; fix: {fix}", line.text),
        None => line.text.clone(),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_banners_are_cut_at_a_word() {
        assert_eq!(shorten("9.0.0", 80), "9.0.0");
        assert_eq!(
            shorten("curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/7.88.1", 20),
            "curl 7.88.1 …"
        );
    }

    #[test]
    fn ages_read_in_the_largest_sensible_unit() {
        assert_eq!(describe_age(0), "1 minute");
        assert_eq!(describe_age(59 * 60), "59 minutes");
        assert_eq!(describe_age(3 * 3600), "3 hours");
        assert_eq!(describe_age(86_400 * 2), "2 days");
        assert_eq!(describe_age(86_400 * 30 + 5), "30 days");
    }
}
