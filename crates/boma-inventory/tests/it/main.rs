//! boma-inventory's integration tests, one test binary (one link): a module per subject.

mod argv;
mod connection;
mod invariant;
mod profile;
mod real;
mod transient;
