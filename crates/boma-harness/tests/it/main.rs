//! boma-harness's integration tests, one test binary (one link): a module per subject.

mod faults;
mod fleet;
mod golden;
mod isolation;
mod outcomes;
mod real_inventory;
mod support;
mod verify;
