//! Free loopback ports for QEMU's `hostfwd`, found by probing.

use std::net::{Ipv4Addr, TcpListener};

use crate::VmError;

/// `count` distinct ports on 127.0.0.1 that were free a moment ago. The listeners are held
/// until all are chosen so the same port is not handed out twice; QEMU binds them right after,
/// and a lost race shows up as QEMU refusing to start, which the caller retries.
pub fn free_loopback_ports(count: usize) -> Result<Vec<u16>, VmError> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| VmError::Backend(format!("cannot probe a free loopback port: {e}")))?;
        held.push(listener);
    }
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| VmError::Backend(format!("cannot read a probed port: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn distinct_and_bindable() {
        // Bindable is a race with every other process on the machine (tests of other crates
        // probe loopback ports too): a port probed free must be bindable in most attempts.
        let mut bound = 0;
        for _ in 0..5 {
            let ports = super::free_loopback_ports(3).unwrap();
            assert_eq!(ports.len(), 3);
            assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
            if std::net::TcpListener::bind(("127.0.0.1", ports[0])).is_ok() {
                bound += 1;
            }
        }
        assert!(bound >= 3, "only {bound} of 5 probed ports could be bound");
    }
}
