//! The scheduler: each job starts in turn ([`start_order`]) once it fits beside the running ones
//! ([`Bounds::may_start`]), on its own thread, until every job ran — or an interrupt arrived,
//! after which nothing new starts and every job not started yet is [`Turn::NotStarted`], so that
//! no host goes missing from the report.

use std::sync::{Condvar, Mutex};

use crate::bounds::{Bounds, Charge, InUse, start_order};

/// One host to run, and what its VM will hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub host: String,
    pub charge: Charge,
}

/// What became of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn<T> {
    /// An interrupt arrived before its turn: it never started.
    NotStarted,
    /// It ran; what `run` returned.
    Ran(T),
}

/// Run every job through `run`, at most as many at once as `bounds` allow; `interrupted` is
/// asked before each start. The turns come back in the order of `jobs`, whatever order they
/// started or ended in.
pub fn run_all<T: Send>(
    jobs: &[Job],
    bounds: Bounds,
    interrupted: &(dyn Fn() -> bool + Sync),
    run: &(dyn Fn(&Job) -> T + Sync),
) -> Vec<Turn<T>> {
    // What the running children hold, and a condition to wait on for room.
    let slots = (Mutex::new(InUse::default()), Condvar::new());
    let done: Mutex<Vec<Option<T>>> = Mutex::new(jobs.iter().map(|_| None).collect());
    let charges: Vec<Charge> = jobs.iter().map(|j| j.charge).collect();
    std::thread::scope(|scope| {
        for index in start_order(&charges) {
            let job = &jobs[index];
            {
                let (lock, ready) = &slots;
                let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
                while !bounds.may_start(*state, job.charge) {
                    state = ready.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                if interrupted() {
                    break;
                }
                state.take(job.charge);
            }
            let (slots, done) = (&slots, &done);
            scope.spawn(move || {
                // Given back however `run` ends, a panic included: a charge never given back
                // would keep the loop above waiting for room forever.
                let _held = Held {
                    slots,
                    charge: job.charge,
                };
                let result = run(job);
                done.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(result);
            });
        }
    });
    done.into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|ran| ran.map_or(Turn::NotStarted, Turn::Ran))
        .collect()
}

/// A running child's charge, given back when it is dropped.
struct Held<'a> {
    slots: &'a (Mutex<InUse>, Condvar),
    charge: Charge,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let (lock, ready) = self.slots;
        lock.lock()
            .unwrap_or_else(|e| e.into_inner())
            .give_back(self.charge);
        ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    fn jobs(mem: &[u64]) -> Vec<Job> {
        mem.iter()
            .enumerate()
            .map(|(i, &mem_mib)| Job {
                host: format!("host-{i}"),
                charge: Charge { mem_mib, vcpus: 2 },
            })
            .collect()
    }

    #[test]
    fn every_job_runs_within_the_bounds_and_comes_back_in_the_given_order() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let turns = run_all(
            &jobs(&[2304, 3840, 2304, 2816]),
            Bounds::new(2, 100_000, 8),
            &|| false,
            &|job| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(30));
                running.fetch_sub(1, Ordering::SeqCst);
                job.host.clone()
            },
        );
        assert_eq!(
            turns,
            ["host-0", "host-1", "host-2", "host-3"].map(|h| Turn::Ran(h.to_owned()))
        );
        assert_eq!(most.load(Ordering::SeqCst), 2, "-j 2 ran two at once");
    }

    #[test]
    fn after_an_interrupt_no_job_starts_and_each_unstarted_one_says_so() {
        let signalled = AtomicBool::new(false);
        // -j 1: the biggest (host-1) runs first, and the interrupt arrives while it runs.
        let turns = run_all(
            &jobs(&[2304, 3840, 2816]),
            Bounds::new(1, 100_000, 8),
            &|| signalled.load(Ordering::SeqCst),
            &|job| {
                signalled.store(true, Ordering::SeqCst);
                job.host.clone()
            },
        );
        assert_eq!(
            turns,
            [
                Turn::NotStarted,
                Turn::Ran("host-1".to_owned()),
                Turn::NotStarted
            ]
        );
    }

    #[test]
    fn an_interrupt_before_the_first_start_starts_nothing() {
        let turns = run_all(&jobs(&[1, 2]), Bounds::new(2, 100, 8), &|| true, &|_| ());
        assert_eq!(turns, [Turn::NotStarted, Turn::NotStarted]);
    }
}
