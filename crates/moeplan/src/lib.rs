//! moeplan: plan, check and explain parallel deployments of Mixture-of-Experts
//! inference from first principles.
//!
//! Data flows one way: `spec`/`hf`/`catalog` read what the user brings into
//! validated domain types (`model`, `hardware`); `layout` and `memory` place
//! the model on GPUs; later stages cost and search those placements. The
//! library never prints: the CLI owns all output.
#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![deny(clippy::print_stdout, clippy::print_stderr)]
// Divisibility rules (heads by TP, experts by EP) read as the domain states them.
#![allow(clippy::manual_is_multiple_of)]

pub mod accuracy;
pub mod audit;
pub mod bounds;
pub mod calibrate;
pub mod calibration;
pub mod catalog;
pub mod dag;
pub mod dtype;
pub mod engine;
pub mod figures;
pub mod fit;
pub mod hardware;
pub mod hf;
pub mod launch;
pub mod layout;
pub mod memory;
pub mod model;
pub mod ops;
pub mod output;
pub mod profile;
pub mod quantity;
pub mod replica;
pub mod report;
pub mod runs;
pub mod search;
pub mod serving;
pub mod simulate;
pub mod slo;
pub mod spec;
pub mod units;
