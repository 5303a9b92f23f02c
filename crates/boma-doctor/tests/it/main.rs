//! boma-doctor's integration tests, one test binary (one link): a module per subject.

mod diagnose;
mod gather;
mod role;
