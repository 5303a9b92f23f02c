//! boma-tags's integration tests, one test binary (one link): a module per subject.

mod check_repo;
