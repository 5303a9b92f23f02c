//! boma-host's integration tests, one test binary (one link): a module per subject.

mod reserve;
mod stop;
