//! boma-ssh's integration tests, one test binary (one link): a module per subject.

mod ssh_g;
mod support;
mod wrap;
