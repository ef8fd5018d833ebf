//! The library's integration tests: one test binary (one link) with a
//! module per subject. Run one module with
//! `cargo test -p moeplan --test library <module>::`, e.g. `schemas::`.
//! Tests that read `../shared` say so and skip visibly without it.

mod audit;
mod calibrate;
mod calibration;
mod dag;
mod deployment_options;
mod disagg;
mod fuzz_parsers;
mod hf_corpus;
mod invariants;
mod launch;
mod physics;
mod planner;
mod runs;
mod schemas;
mod simulate;
mod validation;
