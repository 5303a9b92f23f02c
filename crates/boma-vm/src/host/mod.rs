//! The control node as the VMs see it: the KVM-or-TCG verdict, memory and disk guards, free
//! loopback ports, and the hypervisor processes found in `/proc`.

pub mod accel;
pub mod memory;
pub mod ports;
pub mod procs;
