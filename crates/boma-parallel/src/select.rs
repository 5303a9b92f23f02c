//! Which profiles a multi-profile run takes: each once, and for a CI matrix one slice. Pure.

use std::str::FromStr;

/// `K/N`: the K-th (1-based) of N slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let parsed = s.split_once('/').and_then(|(k, n)| {
            Some(Shard {
                index: k.trim().parse().ok()?,
                count: n.trim().parse().ok()?,
            })
        });
        match parsed {
            Some(shard) if shard.count >= 1 && (1..=shard.count).contains(&shard.index) => {
                Ok(shard)
            }
            _ => Err(format!(
                "`{s}` is not a shard: write K/N with 1 <= K <= N, e.g. 2/4"
            )),
        }
    }
}

/// The K-th of N slices of `hosts` (sorted first, so every machine of a CI matrix computes the
/// same slices): host `i` goes to slice `i % N`.
pub fn shard_of(hosts: &[String], shard: Shard) -> Vec<String> {
    let mut sorted = hosts.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % shard.count == shard.index - 1)
        .map(|(_, h)| h)
        .collect()
}

/// `hosts` each once, in the order first named; and the hosts named more than once (each
/// once), for the caller to say. Two runs of one profile at once would race for its layers and
/// report twice under one name; once is what was meant.
pub fn dedup(hosts: &[String]) -> (Vec<String>, Vec<String>) {
    let mut once: Vec<String> = Vec::new();
    let mut repeated: Vec<String> = Vec::new();
    for host in hosts {
        if !once.contains(host) {
            once.push(host.clone());
        } else if !repeated.contains(host) {
            repeated.push(host.clone());
        }
    }
    (once, repeated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shards_are_deterministic_disjoint_and_complete() {
        let all = hosts(&["ubongo", "askari", "cat-a", "cat-b", "cat-c"]);
        let mut seen = Vec::new();
        for k in 1..=3 {
            let slice = shard_of(&all, Shard { index: k, count: 3 });
            // The order of the input does not matter.
            let mut reversed = all.clone();
            reversed.reverse();
            assert_eq!(slice, shard_of(&reversed, Shard { index: k, count: 3 }));
            seen.extend(slice);
        }
        seen.sort();
        let mut expected = all.clone();
        expected.sort();
        assert_eq!(seen, expected);
        assert_eq!(
            shard_of(&all, Shard { index: 1, count: 3 }),
            hosts(&["askari", "cat-c"])
        );
    }

    #[test]
    fn shard_syntax() {
        assert_eq!("2/4".parse(), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "1/0", "x", "1-2"] {
            assert!(bad.parse::<Shard>().unwrap_err().contains("K/N"), "{bad}");
        }
    }

    #[test]
    fn a_host_named_twice_runs_once_in_the_order_first_named() {
        let (once, repeated) = dedup(&hosts(&["askari", "ubongo", "askari", "askari"]));
        assert_eq!(once, hosts(&["askari", "ubongo"]));
        assert_eq!(repeated, hosts(&["askari"]));
        let (once, repeated) = dedup(&hosts(&["askari", "ubongo"]));
        assert_eq!(once, hosts(&["askari", "ubongo"]));
        assert!(repeated.is_empty());
    }
}
