//! boma-report's integration tests, one test binary (one link): a module per subject.

mod junit_schema;
mod render;
mod scenarios;
mod tidy;
