//! One module per subcommand.
pub mod catalog;
pub mod model;
pub mod schema;
