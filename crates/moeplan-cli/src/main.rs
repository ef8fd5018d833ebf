//! The `moeplan` binary: parses arguments and hands over to `dispatch`.
use std::process::ExitCode;

mod args;
mod commands;
mod dispatch;
mod output;

fn main() -> ExitCode {
    let cli = match <args::Cli as clap::Parser>::try_parse() {
        Ok(cli) => cli,
        Err(e) => return argument_error(e),
    };
    // A panic is a bug in moeplan, never the user's input: say so, and exit 3.
    std::panic::set_hook(Box::new(|info| output::internal_error(&info.to_string())));
    std::panic::catch_unwind(|| dispatch::run(cli)).unwrap_or(ExitCode::from(3))
}

/// A command line clap refuses: as clap writes it (help and version
/// included), except that with `--json` a real error is JSON on stdout,
/// like every other error of a `--json` command (exit 2).
fn argument_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let asks_json = std::env::args_os().any(|a| a == "--json");
    let informational = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !asks_json || informational {
        e.exit();
    }
    let text = e.render().to_string();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let message = lines
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string();
    let help: Vec<String> = lines.map(|l| l.trim().to_string()).collect();
    output::json(&moeplan::output::ErrorOutput {
        error: moeplan::output::ErrorBody {
            kind: "input",
            message,
            help,
        },
    });
    ExitCode::from(2)
}
