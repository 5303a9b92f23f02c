//! boma-exec's integration tests, one test binary (one link): a module per subject.

mod interrupt;
mod journal;
mod support;
