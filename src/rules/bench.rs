//! The evaluation benchmark.
