//! boma-layers's integration tests, one test binary (one link): a module per subject.

mod concurrent;
mod key_inputs;
mod real_repo;
mod store;
mod support;
