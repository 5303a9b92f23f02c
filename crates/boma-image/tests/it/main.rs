//! boma-image's integration tests, one test binary (one link): a module per subject.

mod cache;
mod pin;
mod support;
