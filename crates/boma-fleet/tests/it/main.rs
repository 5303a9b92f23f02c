//! boma-fleet's integration tests, one test binary (one link): a module per subject.

mod file;
mod findings;
mod network;
mod plan;
mod probe;
mod repo;
mod scan;
