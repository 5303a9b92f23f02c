//! The control node as the VMs need it: the KVM probe (it boots a guest; the verdict and its
//! rules are `boma_host`'s), free loopback ports, and telling test VMs' QEMUs apart in `/proc`.

pub mod accel;
pub mod ports;
pub mod procs;
