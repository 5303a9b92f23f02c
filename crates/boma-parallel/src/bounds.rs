//! How many children may run at once: the jobs asked for, the memory left to guests, and the
//! vCPUs the cores can carry; which starts first. Pure: the machine's memory and cores come
//! from the caller.

/// vCPUs per host core that children may hold together. A TCG vCPU is a busy host thread, and
/// a guest starved of CPU misses its waits (seen here: a reboot timeout when a `cargo` build
/// ran beside two 2-vCPU guests on 2 cores); two per core is what `-j 2` of two-vCPU guests
/// takes on a 2-core machine, and no more.
pub const VCPUS_PER_CORE: u32 = 2;

/// What one child's VM holds while it runs: its memory with QEMU's overhead, and its vCPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Charge {
    pub mem_mib: u64,
    pub vcpus: u32,
}

/// How many children run now, and what their VMs hold together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InUse {
    pub runs: usize,
    pub held: Charge,
}

impl InUse {
    /// A child started, holding `charge`.
    pub fn take(&mut self, charge: Charge) {
        self.runs += 1;
        self.held.mem_mib += charge.mem_mib;
        self.held.vcpus += charge.vcpus;
    }

    /// A child ended (or never started), giving `charge` back.
    pub fn give_back(&mut self, charge: Charge) {
        self.runs -= 1;
        self.held.mem_mib -= charge.mem_mib;
        self.held.vcpus -= charge.vcpus;
    }
}

/// The bounds of `-j N`: the jobs asked for, the memory left to guests, and the vCPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub jobs: usize,
    pub mem_mib: u64,
    pub vcpus: u32,
}

impl Bounds {
    /// `-j jobs` (at least 1) on a machine with `guest_mib` of memory for guests (what is
    /// available less the reservation's margin) and `cores` cores.
    pub fn new(jobs: usize, guest_mib: u64, cores: usize) -> Bounds {
        Bounds {
            jobs: jobs.max(1),
            mem_mib: guest_mib,
            vcpus: u32::try_from(cores)
                .unwrap_or(u32::MAX)
                .saturating_mul(VCPUS_PER_CORE),
        }
    }

    /// Whether a child whose VM needs `charge` may start beside `in_use`. The first always
    /// starts: its own preflight refuses a VM that can never fit.
    pub fn may_start(&self, in_use: InUse, charge: Charge) -> bool {
        in_use.runs == 0
            || (in_use.runs < self.jobs
                && in_use.held.mem_mib + charge.mem_mib <= self.mem_mib
                && in_use.held.vcpus + charge.vcpus <= self.vcpus)
    }
}

/// The order children start in: the biggest guests first (a bigger guest is the heavier
/// profile, and starting the longest runs first shortens the whole), ties in the given order.
/// The report keeps the given order whatever this is.
pub fn start_order(charges: &[Charge]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..charges.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(charges[i].mem_mib));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_starts_within_the_jobs_the_memory_and_the_vcpus() {
        let two_cores = Bounds::new(4, 20_000, 2);
        assert_eq!(two_cores.vcpus, 2 * VCPUS_PER_CORE);
        let guest = Charge {
            mem_mib: 2304,
            vcpus: 2,
        };
        let running = |runs: usize| InUse {
            runs,
            held: Charge {
                mem_mib: guest.mem_mib * runs as u64,
                vcpus: guest.vcpus * runs as u32,
            },
        };
        // -j 4 of 2-vCPU guests on 2 cores: two at once, the vCPUs decide.
        assert!(two_cores.may_start(running(0), guest));
        assert!(two_cores.may_start(running(1), guest));
        assert!(!two_cores.may_start(running(2), guest));
        // The jobs decide.
        let one_job = Bounds {
            jobs: 1,
            ..two_cores
        };
        assert!(!one_job.may_start(running(1), guest));
        // The memory decides.
        let small = Bounds {
            mem_mib: 4000,
            ..two_cores
        };
        assert!(!small.may_start(running(1), guest));
        // The first always starts, however big: its preflight refuses what can never fit.
        let huge = Charge {
            mem_mib: 64_000,
            vcpus: 16,
        };
        assert!(small.may_start(InUse::default(), huge));
    }

    #[test]
    fn zero_jobs_is_one() {
        assert_eq!(Bounds::new(0, 1, 1).jobs, 1);
    }

    #[test]
    fn what_is_taken_is_given_back() {
        let mut in_use = InUse::default();
        let a = Charge {
            mem_mib: 2304,
            vcpus: 2,
        };
        let b = Charge {
            mem_mib: 3840,
            vcpus: 4,
        };
        in_use.take(a);
        in_use.take(b);
        assert_eq!(in_use.runs, 2);
        assert_eq!(in_use.held.mem_mib, 6144);
        in_use.give_back(a);
        in_use.give_back(b);
        assert_eq!(in_use, InUse::default());
    }

    #[test]
    fn the_biggest_guests_start_first_ties_in_order() {
        let mem = |mib: &[u64]| -> Vec<Charge> {
            mib.iter()
                .map(|&mem_mib| Charge { mem_mib, vcpus: 2 })
                .collect()
        };
        assert_eq!(start_order(&mem(&[2304, 3840, 2304, 2816])), [1, 3, 0, 2]);
        assert!(start_order(&[]).is_empty());
    }
}
