//! One module per subcommand.
pub mod accuracy;
pub mod audit;
pub mod calibrate;
pub mod catalog;
pub mod dag;
pub mod deployment;
pub mod estimate;
pub mod launch;
pub mod model;
pub mod plan;
pub mod schema;
pub mod simulate;
mod simulate_timeline;
