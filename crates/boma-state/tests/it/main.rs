//! boma-state's integration tests, one test binary (one link): a module per subject.

mod capture_script;
mod diff;
mod fixtures;
mod tidy;
