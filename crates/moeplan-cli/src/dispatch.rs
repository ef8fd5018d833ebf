//! Runs a parsed command and maps its outcome to an exit code.
use crate::args::{Cli, Command};
use crate::commands;
use crate::output::{self, Failure, Format};
use std::process::ExitCode;

/// Runs the command; all output goes through `output`.
pub fn run(cli: Cli) -> ExitCode {
    // An empty MOEPLAN_PROFILE (`MOEPLAN_PROFILE=`) is no profile.
    let profile = cli.profile.clone().or_else(|| {
        std::env::var_os("MOEPLAN_PROFILE")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    });
    output::set_tables(match cli.wide {
        true => output::Tables::Wide,
        false => output::Tables::FitTerminal,
    });
    // A calibration fits from the built-in layer or its --base: a profile
    // in use would change nothing it writes, so it is said, not loaded.
    let profile = match (&cli.command, profile) {
        (Command::Calibrate(_), Some(path)) => {
            output::note(&format!(
                "profile {} not used: calibrate fits from the built-in serving layer, or from the profile given as --base",
                path.display()
            ));
            None
        }
        (_, p) => p,
    };
    if let Some(path) = profile {
        if let Err(f) = commands::calibrate::use_profile(&path) {
            return output::failure(f);
        }
    }
    let result = match cli.command {
        Command::Model(a) => commands::model::run(&a),
        Command::Catalog(a) => commands::catalog::run(&a),
        Command::Schema(a) => commands::schema::run(&a),
        Command::Estimate(a) => commands::estimate::run(&a),
        Command::Plan(a) => commands::plan::run(&a),
        Command::Audit(a) => commands::audit::run(&a),
        Command::Dag(a) => commands::dag::run(&a),
        Command::Accuracy(a) => commands::accuracy::run(&a),
        Command::Calibrate(a) => commands::calibrate::run(&a),
        Command::Launch(a) => commands::launch::run(&a),
        Command::Simulate(a) => commands::simulate::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => output::failure(f),
    }
}

/// Convenience for commands: a spec error is bad input.
impl From<moeplan::spec::SpecError> for Failure {
    fn from(e: moeplan::spec::SpecError) -> Self {
        Failure::Input(Box::new(e), Format::Text)
    }
}
