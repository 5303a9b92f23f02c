//! xtask's integration tests, one test binary (one link): a module per subject.

mod ci_programs;
mod connection_matrix;
mod quick_start;
mod stdout;
mod support;
mod tidy;
