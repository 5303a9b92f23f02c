//! `fleet-net`: the fleet's infrastructure on real guests, driven through `boma_vm` before the
//! fleet cycle drives it (issue 20, ADR-027). Two small members on one `vde_switch`, each with
//! its second NIC as cloud-init's network-config sets it; they reach each other at their fleet
//! addresses and nothing routes through the segment; a `together` round in boot order (QMP
//! `stop`, then `system_reset` + `cont` one after another) gives each a new boot_id and the
//! segment still carries them; a rolling reboot of one leaves the other's boot_id; taking the
//! members down and the segment down leaves nothing. Not in `all`: the fleet cycle's own
//! scenarios take over once it runs fleets.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::{Context, ensure};
use boma_cloudinit::{FleetNic as SeedNic, MetaData, NetworkConfig, UserData};
use boma_fleet::{Boot, FLEET_NETWORK, MemberNic};
use boma_name::VmName;
use boma_vm::hypervisor::qemu::QemuBackend;
use boma_vm::lifecycle::{self, BaseImage, Effects, Hypervisors, RealDisks, UpRequest, Waits};
use boma_vm::{
    Accel, BackendKind, FleetNic, Hypervisor, OpenSsh, RebootHow, RunRecord, Runs, Segment,
};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::Shell;

use super::{Suite, ensure_image, golden_image, guest_run, require_no_leftovers};

const S: &str = "fleet-net";
/// The members, in fleet order; the `together` round boots them in reverse.
const MEMBERS: [&str; 2] = ["fleet-net-a", "fleet-net-b"];
/// The fleet's small guests (ADR-027: two of them must run on 2 cores under TCG).
const MEM_MIB: u32 = 768;

/// The QEMU backend for the lifecycle, as the harness's machine gives it.
struct Qemu<'a> {
    sh: &'a Shell,
    runs_root: &'a Utf8Path,
}

impl Hypervisors for Qemu<'_> {
    fn get(&self, _kind: BackendKind) -> Box<dyn Hypervisor + '_> {
        Box::new(QemuBackend::new(self.sh, self.runs_root))
    }
}

pub fn fleet_net(suite: &mut Suite) -> anyhow::Result<()> {
    ensure_image(suite, S)?;
    let golden = golden_image(suite)?;
    let sh = Shell::new()?;
    let runs_root = suite.repo.join("tests/integration/.run");
    let runs = Runs::new(&runs_root);
    let _lock = runs.lock("vm-suite fleet-net")?;
    let (key, public_key) = boma_vm::guest::keys::ensure_keypair(&sh, &suite.work.join("keys"))?;
    let id = format!("{:08x}", std::process::id());
    let none = BTreeSet::new();
    let fleet_dir = runs_root.join(VmName::mint("fleet-net", &id, &none)?.as_str());
    let segment = Segment::for_run(BackendKind::Qemu, &fleet_dir)?;
    let machine = Qemu {
        sh: &sh,
        runs_root: &runs_root,
    };
    let ssh = OpenSsh::new(&sh);
    let disks = RealDisks { sh: &sh };
    let fx = Effects {
        runs: &runs,
        hypervisors: &machine,
        kind: BackendKind::Qemu,
        guest: &ssh,
        disks: &disks,
        waits: Waits::for_accel(Accel::Tcg),
    };
    let names: Vec<String> = MEMBERS.iter().map(|m| (*m).to_owned()).collect();
    let nics = FLEET_NETWORK.members(&names)?;
    let mut records: Vec<RunRecord> = Vec::new();
    let outcome = (|| -> anyhow::Result<()> {
        let started = Instant::now();
        lifecycle::segment_up(&fx, &segment)?;
        for (member, nic) in MEMBERS.iter().zip(&nics) {
            let req = request(member, nic, &id, &golden, &key, &public_key)?;
            let nic = FleetNic::new(nic, segment.clone());
            let record = lifecycle::up_member(&fx, &req, &nic).map_err(|f| f.error)?;
            records.push(record);
        }
        suite.time(S, "segment and two members up", started.elapsed());
        check_segment(&records, &nics, "after boot")?;

        let before: Vec<String> = records.iter().map(boot_id).collect::<Result<_, _>>()?;
        let started = Instant::now();
        let order = Boot::InOrder(MEMBERS.iter().rev().map(|m| (*m).to_owned()).collect());
        let booted = lifecycle::together(&fx, &mut records, &order)?;
        suite.time(S, "together (boot order b, a)", started.elapsed());
        for ((record, before), booted) in records.iter().zip(&before).zip(&booted) {
            let after = boot_id(record)?;
            ensure!(
                after != *before,
                "{}: the together round left its boot_id {before}",
                record.name
            );
            ensure!(
                booted.system_state == "running" || booted.system_state == "degraded",
                "{}: system state {} after the together round",
                record.name,
                booted.system_state
            );
        }
        check_segment(&records, &nics, "after the together round")?;

        let other = boot_id(&records[1])?;
        let started = Instant::now();
        lifecycle::reboot(&fx, &mut records[0], RebootHow::Guest)?;
        suite.time(S, "rolling reboot of fleet-net-a", started.elapsed());
        ensure!(
            boot_id(&records[1])? == other,
            "fleet-net-b rebooted with its peer"
        );
        check_segment(&records, &nics, "after the rolling reboot")
    })();
    for record in &records {
        if let Err(e) = lifecycle::down(&fx, record) {
            eprintln!("cannot remove {}: {e}", record.name);
        }
    }
    let down = lifecycle::segment_down(&fx, &segment);
    let _ = std::fs::remove_dir_all(&fleet_dir);
    let _ = runs.clear_current();
    outcome?;
    down?;
    ensure!(
        segment.switch().is_some_and(|s| !s.dir.exists()),
        "the switch's socket directory is still there"
    );
    require_no_leftovers(suite, "the fleet's teardown")
}

/// A member's `up`: its seed with the fleet NIC's stanza, the golden image, a small guest.
fn request(
    member: &str,
    nic: &MemberNic,
    id: &str,
    golden: &Utf8Path,
    key: &Utf8Path,
    public_key: &str,
) -> anyhow::Result<UpRequest> {
    let name = VmName::mint(member, id, &BTreeSet::new())?;
    let mac = boma_vm::mac_for(name.as_str());
    let keys = [public_key.to_owned()];
    let network_config = boma_cloudinit::fleet_network_config(
        &NetworkConfig {
            mac: &mac,
            unreachable: &[],
        },
        &SeedNic {
            mac: &nic.mac,
            address: &nic.cidr(),
        },
    );
    Ok(UpRequest {
        host: member.to_owned(),
        user_data: boma_cloudinit::user_data(&UserData::new(&keys))?,
        meta_data: boma_cloudinit::meta_data(&MetaData {
            instance_id: name.as_str(),
            local_hostname: member,
        }),
        network_config,
        name,
        mac,
        base_image: golden.to_owned(),
        base: BaseImage::Golden,
        mem_mib: MEM_MIB,
        vcpus: 1,
        published_ports: Vec::new(),
        accel: Accel::Tcg,
        user: boma_cloudinit::DEFAULT_USER.to_owned(),
        key: Utf8PathBuf::from(key),
        exclusive: false,
    })
}

/// Each member has its fleet address on its second NIC, reaches every other member's sshd
/// there, and has no default route through the segment.
fn check_segment(records: &[RunRecord], nics: &[MemberNic], when: &str) -> anyhow::Result<()> {
    for (record, nic) in records.iter().zip(nics) {
        let addresses = guest_run(record, "ip -4 -o addr show to 10.231.0.0/24")?;
        ensure!(
            addresses.contains(&nic.cidr()),
            "{when}: {} does not have {} on its fleet NIC: {addresses}",
            record.name,
            nic.cidr()
        );
        let device = addresses
            .split_whitespace()
            .nth(1)
            .context("no fleet device")?
            .to_owned();
        let default = guest_run(record, "ip -4 route show default; ip -6 route show default")?;
        ensure!(
            !default.contains(&format!("dev {device} ")) && !default.ends_with(&device),
            "{when}: {} routes by default through its fleet NIC {device}: {default}",
            record.name
        );
        for peer in nics.iter().filter(|p| p.address != nic.address) {
            let address = peer.address;
            guest_run(
                record,
                &format!("timeout 10 bash -c 'exec 3<>/dev/tcp/{address}/22' && echo reached"),
            )
            .with_context(|| format!("{when}: {} cannot reach {address}:22", record.name))?;
        }
    }
    Ok(())
}

fn boot_id(record: &RunRecord) -> anyhow::Result<String> {
    super::boot_id(record)
}
