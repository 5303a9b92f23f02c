//! Phase names and elapsed times on stderr, and the timings kept for the run's summary.

use std::sync::Mutex;
use std::time::{Duration, Instant};

static TIMINGS: Mutex<Vec<(String, Duration)>> = Mutex::new(Vec::new());

/// A named step in progress. Prints `==> name` when started and `<== name: 12.3s` (with the
/// outcome) when finished; the timing is kept for [`timings`].
#[derive(Debug)]
#[must_use = "call .done() or .failed() when the phase ends"]
pub struct Phase {
    name: String,
    started: Instant,
}

/// Start a phase.
pub fn phase(name: impl Into<String>) -> Phase {
    let name = name.into();
    eprintln!("==> {name}");
    Phase {
        name,
        started: Instant::now(),
    }
}

impl Phase {
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The phase succeeded.
    pub fn done(self) -> Duration {
        self.finish("ok")
    }

    /// The phase ended otherwise (failed, interrupted): still timed.
    pub fn failed(self) -> Duration {
        self.finish("FAILED")
    }

    fn finish(self, outcome: &str) -> Duration {
        let elapsed = self.started.elapsed();
        eprintln!("<== {} {outcome} in {}", self.name, human(elapsed));
        TIMINGS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((self.name, elapsed));
        elapsed
    }
}

/// Every phase finished so far, in order.
pub fn timings() -> Vec<(String, Duration)> {
    TIMINGS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// `12.3s`, or `2m05s` past a minute.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_records() {
        assert_eq!(human(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(human(Duration::from_secs(125)), "2m05s");
        let p = phase("unit-test-phase");
        p.done();
        assert!(timings().iter().any(|(n, _)| n == "unit-test-phase"));
    }
}
